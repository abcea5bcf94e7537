//! Snyk's request budget (docs/design.md, "Snyk's request budget"): every replica of every
//! service takes its permits from one schedule per install, a 429 pauses them all, and a listing
//! that cannot get its permits in time says so at once. The fake enforces Snyk's per-token limit
//! (`FAKE_SNYK_RATE_LIMIT_PER_MINUTE`) and counts every 429 it sent.
//!
//! The fake's window is a minute, so a test whose demand passes the fake's limit takes a little
//! over a minute by construction.

use std::time::{Duration, Instant};

use fake_snyk::OrgSeed;
use futures::future::join_all;
use serde_json::Value;
use system_tests::*;

/// A stack whose one install sees one org of `pages` full pages, with the fake allowing
/// `fake_per_minute` REST requests a minute per token; two token-service replicas (with
/// `token_overrides`) and `projects_replicas` projects-services, each in front of both.
struct BudgetStack {
    stack: Stack,
    _token: Vec<Replica>,
    projects: Vec<ProjectsService>,
    org: String,
}

async fn budget_stack(
    pages: usize,
    fake_per_minute: u32,
    token_overrides: &[(&str, &str)],
    projects_replicas: usize,
    deadline_seconds: &str,
) -> BudgetStack {
    // Hour-long tokens: the fake's limit is per token, so no refresh may start a new window.
    let mut config = hour_long_tokens();
    config.orgs = vec![OrgSeed::new("Big Org", pages * 100)];
    config.rate_limit_per_minute = fake_per_minute;
    let stack = Stack::start(config).await;
    let token = stack.replicas(2, token_overrides).await;
    let mut c = client(&token[0]).await;
    let org = stack.install(&mut c).await.orgs[0].id.clone();
    let urls = token
        .iter()
        .map(|r| format!("http://{}", r.addr))
        .collect::<Vec<_>>()
        .join(",");
    let mut projects = Vec::new();
    for _ in 0..projects_replicas {
        projects.push(
            stack
                .projects(
                    token[0].addr,
                    &[
                        ("TOKEN_SERVICE_URL", &urls),
                        ("PROJECTS_SERVICE_DEADLINE_SECONDS", deadline_seconds),
                    ],
                )
                .await,
        );
    }
    BudgetStack {
        stack,
        _token: token,
        projects,
        org,
    }
}

impl BudgetStack {
    /// `per_replica` concurrent listings on every projects-service at once: each answer's
    /// status and body.
    async fn list_everywhere(&self, per_replica: usize) -> Vec<(u16, Value)> {
        let path = format!("/v1/orgs/{}/projects", self.org);
        let listings = self
            .projects
            .iter()
            .flat_map(|p| (0..per_replica).map(|_| p.get(&path)))
            .map(|res| async {
                let res = res.await;
                (res.status().as_u16(), res.json().await.expect("JSON body"))
            });
        join_all(listings).await
    }
}

/// Demand above the fake's limit, a budget under it: every listing completes and the fake
/// never has to say 429, however many replicas ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_budget_and_snyk_never_says_429() {
    // 55 a minute (one request every 1.09 s, no burst) against the fake's 60: 66 pages and the
    // install's org listing are 67 requests, more than the fake takes in a minute.
    let s = budget_stack(11, 60, &[("SNYK_RATE_LIMIT_PER_MINUTE", "55")], 3, "150").await;

    let answers = s.list_everywhere(2).await;

    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["count"], 1100);
    }
    let stats = s.stack.fake.stats();
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    assert_eq!(stats.rest_calls_by_path.get("projects"), Some(&66));
}

/// A budget above the fake's limit (Snyk's real limit lower than configured): the first 429
/// pauses every replica until its Retry-After, so the fake says 429 about once per replica per
/// pause, and every listing still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_every_replica_until_its_retry_after() {
    // 600 a minute (10 a second) against the fake's 30: the first 30 requests go in about three
    // seconds, then the fake asks for the rest of its minute.
    let s = budget_stack(10, 30, &[("SNYK_RATE_LIMIT_PER_MINUTE", "600")], 3, "150").await;

    let answers = s.list_everywhere(2).await;

    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["count"], 1000);
    }
    let stats = s.stack.fake.stats();
    // A pause opens with a 429 after the previous one's Retry-After; inside it, each replica
    // may have had one request on its way before the pause was reported.
    assert!(
        stats.rate_limit_pauses >= 1,
        "the fake's limit was reached: {stats:?}"
    );
    assert!(
        stats.rate_limited <= 3 * stats.rate_limit_pauses,
        "{} 429s in {} pauses: {stats:?}",
        stats.rate_limited,
        stats.rate_limit_pauses
    );
    assert_eq!(
        stats.rest_calls_by_path.get("projects"),
        Some(&(60 + stats.rate_limited))
    );
}

/// A listing whose next permit comes after its deadline is answered at once: 429 `rate_limited`
/// with the budget's Retry-After, never a wait past the deadline. The install's own org listing
/// took its permit from the same budget.
#[tokio::test]
async fn a_listing_without_a_permit_in_time_is_429_at_once() {
    // 6 a minute: one request every 10 s. The install's org listing took the first slot.
    let s = budget_stack(3, 0, &[("SNYK_RATE_LIMIT_PER_MINUTE", "6")], 1, "3").await;
    assert_eq!(
        s.stack.redis_keys("snykapps:budget:*").await.len(),
        1,
        "the install's org listing took a permit"
    );

    let started = Instant::now();
    let res = s.projects[0]
        .get(&format!("/v1/orgs/{}/projects", s.org))
        .await;
    let elapsed = started.elapsed();
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();

    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("SNYK_RATE_LIMIT_PER_MINUTE"),
        "{body}"
    );
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert!(
        elapsed < Duration::from_secs(3),
        "{elapsed:?}: not past the deadline"
    );
    // No page went out without a permit: the first slot was the org listing's.
    assert_eq!(
        s.stack.fake.stats().rest_calls_by_path.get("projects"),
        None
    );
}
