//! No caller can make token-service spin refreshes (docs/design.md, "No spinning refreshes"): a
//! caller's demand refreshes an install at most once per `TOKEN_MIN_REFRESH_INTERVAL_SECONDS`,
//! counted from when the stored token was minted, over replicas; the server's own refreshes
//! (refresh ahead, the floor, expiry, the keep-alive) are never held to it.

use std::{
    collections::HashSet,
    time::{Duration, Instant, SystemTime},
};

use futures::future::join_all;
use system_tests::*;
use tonic::Code;

/// The interval the loops run with: short enough for several refreshes in their 10 s.
const INTERVAL: Duration = Duration::from_secs(2);
/// How long each loop spins.
const SPIN: Duration = Duration::from_secs(10);

/// Two replicas with `interval`, the install's caller (`projects-service`, which does send
/// ForceRefresh) on each, and one install of hour-long tokens: no refresh falls due by itself,
/// so every refresh at Snyk is one a caller demanded.
async fn two_replicas(interval: Duration) -> (Stack, Vec<Replica>, Vec<Client>, String) {
    let stack = Stack::start(hour_long_tokens()).await;
    let secs = interval.as_secs().to_string();
    let replicas = stack
        .replicas(2, &[("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", &secs)])
        .await;
    let install = stack.install(&mut client(&replicas[0]).await).await;
    let mut callers = Vec::new();
    for r in &replicas {
        callers.push(client_with_key(r.addr, PROJECTS_TOKEN_KEY).await);
    }
    (stack, replicas, callers, install.install_id)
}

/// At most one refresh per interval over the loop (a call started just before its end may
/// refresh once more), and at least a few: a caller's demand is held, never ignored.
fn assert_paced(stack: &Stack, what: &str) {
    let stats = stack.fake.stats();
    let most = SPIN.as_secs() / INTERVAL.as_secs() + 1;
    let refreshes = stack.refresh_calls();
    assert!(
        (3..=most).contains(&refreshes),
        "{what}: {refreshes} refreshes at Snyk in {SPIN:?} with a {INTERVAL:?} interval (at most {most}): {stats:?}"
    );
    assert_eq!(stats.spent_refresh_token_reuses, 0, "{what}: {stats:?}");
}

fn spins_refused(replicas: &[Replica]) -> u64 {
    replicas
        .iter()
        .map(|r| r.metrics.snapshot().spins_refused)
        .sum()
}

/// A caller that sends ForceRefresh with the token it just got, again and again, alternating
/// between two replicas: each call waits until its token is an interval old, then one refresh.
#[tokio::test]
async fn a_force_refresh_loop_refreshes_once_per_interval_over_two_replicas() {
    let (stack, replicas, mut callers, id) = two_replicas(INTERVAL).await;
    let mut token = access_token(&mut callers[0], &id).await;
    let mut tokens = HashSet::from([token.clone()]);
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < SPIN {
        let c = &mut callers[calls % 2];
        let asked = Instant::now();
        token = forced_token(c, &id, &token).await;
        calls += 1;
        assert!(
            tokens.insert(token.clone()),
            "call {calls}: a forced refresh of the current token answers a new one"
        );
        assert!(
            stack.token_works(&token).await,
            "call {calls}: the answer is valid at Snyk"
        );
        assert!(
            asked.elapsed() >= INTERVAL - Duration::from_millis(300),
            "call {calls}: answered after {:?}, before its token was an interval old",
            asked.elapsed()
        );
    }
    assert_paced(&stack, "ForceRefresh loop");
    assert_eq!(stack.refresh_calls(), calls as u64, "one refresh per call");
    assert_eq!(spins_refused(&replicas), calls as u64);
}

/// A caller whose `min_validity_seconds` is just under the token's lifetime: the stored token
/// is short of it a second after minting; until the interval has passed, it gets that token.
#[tokio::test]
async fn a_get_access_token_loop_just_under_the_lifetime_refreshes_once_per_interval() {
    let (stack, replicas, callers, id) = two_replicas(INTERVAL).await;
    let lifetime = 3600;
    let start = Instant::now();
    let mut calls = 0;
    let mut answers: Vec<String> = Vec::new();
    while start.elapsed() < SPIN {
        let mut req = by_install(&id);
        req.min_validity_seconds = lifetime - 1;
        let t = callers[calls % 2]
            .clone()
            .get_access_token(req)
            .await
            .unwrap_or_else(|e| panic!("call {calls}: {e:?}"))
            .into_inner();
        calls += 1;
        let expires_at = t.expires_at.expect("an expiry");
        let left = SystemTime::UNIX_EPOCH + Duration::from_secs(expires_at.seconds as u64);
        assert!(
            left > SystemTime::now() + Duration::from_secs(lifetime as u64 - 300),
            "call {calls}: a valid token beyond the margin"
        );
        if answers.last() != Some(&t.access_token) {
            answers.push(t.access_token);
        }
        // Gently: about 200 calls a second (a spinning caller, on a machine the suite shares).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_paced(&stack, "GetAccessToken loop");
    // Every answer between two refreshes was the stored token: one token per refresh, plus the
    // first.
    let distinct: HashSet<&String> = answers.iter().collect();
    assert_eq!(
        distinct.len(),
        answers.len(),
        "a token came back after it was replaced"
    );
    assert_eq!(answers.len() as u64, stack.refresh_calls() + 1);
    for t in &answers {
        assert!(stack.token_works(t).await, "every token answered works");
    }
    // A token lasts the 3599 s asked for during its first second; in the rest of its interval
    // the calls are refused a spin: about half of them.
    let refused = spins_refused(&replicas);
    assert!(
        refused > calls as u64 / 4,
        "the calls in the second half of each interval were refused a spin: {refused} of {calls}"
    );
}

/// Callers on two replicas that all reject the same new token wait out its interval together
/// and share one refresh; one that names an older token gets the current one at once.
#[tokio::test]
async fn callers_waiting_out_the_interval_share_one_refresh() {
    let (stack, replicas, callers, id) = two_replicas(INTERVAL).await;
    let old = access_token(&mut callers[0].clone(), &id).await;
    let minted = Instant::now();
    let calls = (0..20).map(|i| {
        let mut c = callers[i % 2].clone();
        let (id, old) = (id.clone(), old.clone());
        async move { forced_token(&mut c, &id, &old).await }
    });
    let answers: HashSet<String> = join_all(calls).await.into_iter().collect();
    assert!(
        minted.elapsed() >= INTERVAL - Duration::from_millis(300),
        "the refresh waited for the interval: {:?}",
        minted.elapsed()
    );
    assert_eq!(answers.len(), 1, "every caller got the same new token");
    assert!(!answers.contains(&old));
    assert_eq!(stack.refresh_calls(), 1, "one refresh for all of them");
    assert_eq!(spins_refused(&replicas), 20);

    // The rejected token is no longer the stored one: no wait, no refresh.
    let asked = Instant::now();
    let current = forced_token(&mut callers[1].clone(), &id, &old).await;
    assert!(answers.contains(&current));
    assert!(asked.elapsed() < INTERVAL / 2, "{:?}", asked.elapsed());
    assert_eq!(stack.refresh_calls(), 1);
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
}

/// With the longest interval (a minute), the server's own refreshes of 2-second tokens still
/// happen on time: ahead inside the margin, below the floor, after expiry, and a ForceRefresh
/// waits only until the token enters the margin. Were the interval held against them, the
/// tokens handed out here would be stale or expired.
#[tokio::test]
async fn the_servers_own_refreshes_are_not_held_to_the_interval() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack
        .replica(&[("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "60")])
        .await;
    let mut c = client(&replica).await;
    let id = stack.install(&mut c).await.install_id;

    // Inside the margin above the floor: the stored token, and a refresh in the background.
    let t0 = access_token(&mut c, &id).await;
    until_inside_margin().await;
    assert_eq!(access_token(&mut c, &id).await, t0, "served ahead");
    let deadline = Instant::now() + Duration::from_secs(5);
    let t1 = loop {
        let t = access_token(&mut c, &id).await;
        if t != t0 {
            break t;
        }
        assert!(Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stack.refresh_calls(), 1);

    // Below the floor: the caller waits for a refresh.
    until_refresh_due().await;
    let t2 = access_token(&mut c, &id).await;
    assert_ne!(t2, t1, "refreshed below the floor");

    // Expired: the same.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let t3 = access_token(&mut c, &id).await;
    assert_ne!(t3, t2, "refreshed after expiry");

    // A ForceRefresh of that new token waits until it is inside its 1-second margin, not a
    // minute.
    let asked = Instant::now();
    let t4 = forced_token(&mut c, &id, &t3).await;
    assert_ne!(t4, t3);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );

    assert!(stack.token_works(&t4).await);
    assert_eq!(stack.refresh_calls(), 4);
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
}

/// The keep-alive refreshes an idle install whose refresh token is due, however recently its
/// access token was minted: 4-second refresh tokens (due 2 s after each refresh) against a
/// minute's interval. Were the sweeper held to the interval, the install would die.
#[tokio::test]
async fn the_keepalive_is_not_held_to_the_interval() {
    let mut fake = hour_long_tokens();
    fake.refresh_token_ttl = Duration::from_secs(4);
    let stack = Stack::start(fake).await;
    let replica = stack
        .replica(&[
            ("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "60"),
            ("TOKEN_KEEPALIVE_INTERVAL_SECONDS", "1"),
        ])
        .await;
    let mut c = client(&replica).await;
    let created = Instant::now();
    let id = stack.install(&mut c).await.install_id;
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(created.elapsed())).await;
    let stats = stack.fake.stats();
    assert!(
        stats.successful_refreshes >= 2 && stats.spent_refresh_token_reuses == 0,
        "the sweeper refreshed within the interval: {stats:?}"
    );
    let t = access_token(&mut c, &id).await;
    assert!(stack.token_works(&t).await);
    assert_eq!(spins_refused(std::slice::from_ref(&replica)), 0);
}

/// A ForceRefresh of a token minted moments ago whose grant the user revoked at Snyk waits for
/// the interval, then meets `invalid_grant`: the install needs re-authorization, as without the
/// rule.
#[tokio::test]
async fn a_revoked_grant_still_ends_needs_reauth_after_the_interval() {
    let (stack, _replicas, mut callers, id) = two_replicas(INTERVAL).await;
    let token = access_token(&mut callers[0], &id).await;
    stack.revoke_at_snyk(&token).await;
    let asked = Instant::now();
    let err = callers[1]
        .force_refresh(force(&id, &token))
        .await
        .expect_err("a revoked grant cannot be refreshed");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(asked.elapsed() < INTERVAL + Duration::from_secs(2));
    assert_eq!(stack.refresh_calls(), 1);
}
