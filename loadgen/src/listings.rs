//! `loadgen listings`: N whole project listings of one org released at once, round-robin over
//! projects-service replicas (`GET /v1/orgs/{org}/projects`), each waited for to the end, while
//! the fake Snyk's counters are sampled every second: what the request budget is measured by
//! (docs/benchmarks.md, "Snyk request budget"). Every listing's outcome is kept (by HTTP status
//! and projects-service's error `code`), and the samples go into the report as they were read, so
//! that the rates are computed from them (`report::budget`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use snykapps_projects_api::ErrorBody;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::LocalUrl;
use crate::drive::GRACE;
use crate::http::{BearerHeader, Counted, fake_stats};
use crate::install::http_client_with_timeout;
use crate::report::budget::{self, FakeSample};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// projects-service replicas; listing `i` goes to `targets[i % len]`.
    pub targets: Vec<LocalUrl>,
    /// projects-service's caller key.
    pub bearer: BearerHeader,
    /// The org listed (through whichever install serves it).
    pub org_id: String,
    /// Listings released at once.
    pub listings: usize,
    /// Projects every listing must hold.
    pub expect_count: Option<u64>,
    /// The fake Snyk whose `/_fake/stats` is sampled.
    pub fake: LocalUrl,
    /// How often it is sampled.
    pub sample_every: Duration,
    /// How long a listing may take before it is abandoned (`client_timeout`).
    pub timeout: Duration,
    /// The request budget the services were given (requests a minute), to state the rate
    /// against; `None` when they have none.
    pub budget_per_minute: Option<u32>,
}

/// How one listing ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The replica it went to (index into the targets).
    pub replica: usize,
    /// Seconds from the release to its answer.
    pub ended_s: f64,
    /// `completed`, or `STATUS code` (`503 unavailable`, `429 rate_limited`), `200
    /// count_mismatch`, `transport`, `client_timeout`.
    pub result: String,
    /// The `Retry-After` projects-service answered with, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

/// The result of a completed listing.
pub const COMPLETED: &str = "completed";

/// What a run did: the JSON line `loadgen listings` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingsReport {
    /// Always `listings`.
    pub kind: String,
    /// The replicas, in order.
    pub targets: Vec<String>,
    /// Listings released.
    pub listings: usize,
    /// Projects each must hold, when checked.
    pub expect_count: Option<u64>,
    /// The budget the services were given, when any.
    pub budget_per_minute: Option<u32>,
    /// Seconds from the release until the last listing answered (or was abandoned): the span
    /// during which listings were outstanding.
    pub wall_s: f64,
    /// Every listing's outcome, in the order they ended.
    pub outcomes: Vec<Outcome>,
    /// The fake's counters, from just before the release (at 0 s) to just after the last answer.
    pub samples: Vec<FakeSample>,
    /// The first failure's message (its body, cut short), if any.
    pub first_error: Option<String>,
}

impl ListingsReport {
    /// Listings that completed.
    pub fn completed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.result == COMPLETED)
            .count()
    }

    /// Failed listings by result.
    pub fn failures(&self) -> BTreeMap<String, u64> {
        let mut failures = BTreeMap::new();
        for outcome in self.outcomes.iter().filter(|o| o.result != COMPLETED) {
            *failures.entry(outcome.result.clone()).or_default() += 1;
        }
        failures
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let mut line = format!(
            "listings: {} of {} completed in {:.1} s over {} replica(s)",
            self.completed(),
            self.listings,
            self.wall_s,
            self.targets.len()
        );
        for (result, n) in self.failures() {
            line.push_str(&format!(" · {n} × {result}"));
        }
        if let Some(span) = budget::Span::of(&self.samples, self.wall_s) {
            line.push_str(&format!(
                " · Snyk: {:.0} accepted requests/min while outstanding, {} rate-limited (429)",
                span.accepted_per_minute(),
                span.rate_limited()
            ));
        }
        if let Some(first) = &self.first_error {
            line.push_str(&format!(" · first error: {first}"));
        }
        line
    }
}

/// One listing: its outcome and, for a failure, the body's start.
async fn list(
    http: reqwest::Client,
    url: reqwest::Url,
    bearer: BearerHeader,
    expect_count: Option<u64>,
) -> (String, Option<u64>, Option<String>) {
    let response = match http
        .get(url)
        .header(AUTHORIZATION, bearer.header().clone())
        .header(ACCEPT, "application/json")
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return ("client_timeout".into(), None, Some(e.to_string())),
        Err(e) => return ("transport".into(), None, Some(e.to_string())),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) if e.is_timeout() => return ("client_timeout".into(), None, Some(e.to_string())),
        Err(e) => return ("transport".into(), None, Some(e.to_string())),
    };
    let excerpt = || Some(String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    if !status.is_success() {
        let result = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => format!("{} {}", status.as_u16(), error.code),
            Err(_) => status.as_u16().to_string(),
        };
        return (result, retry_after, excerpt());
    }
    let count = serde_json::from_slice::<Counted>(&body)
        .ok()
        .and_then(|c| c.count);
    match expect_count {
        Some(want) if count != Some(want) => (
            format!("{} count_mismatch", status.as_u16()),
            None,
            Some(format!("expected count {want}, got {count:?}")),
        ),
        _ => (COMPLETED.into(), None, None),
    }
}

/// Runs `loadgen listings`.
pub async fn run(plan: Plan) -> anyhow::Result<ListingsReport> {
    let http = http_client_with_timeout(plan.timeout)?;
    let urls = plan
        .targets
        .iter()
        .map(|t| {
            t.url()
                .join(&format!("/v1/orgs/{}/projects", plan.org_id))
                .context("the org id does not make a URL")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sample = |start: Instant| {
        let fake = plan.fake.clone();
        async move {
            let stats = fake_stats(&fake).await?;
            FakeSample::read(start.elapsed().as_secs_f64(), &stats)
        }
    };

    let start = Instant::now();
    let mut samples = vec![sample(start).await?];
    let mut listings = JoinSet::new();
    for i in 0..plan.listings {
        let replica = i % urls.len();
        let call = list(
            http.clone(),
            urls[replica].clone(),
            plan.bearer.clone(),
            plan.expect_count,
        );
        listings.spawn(async move { (i, call.await) });
    }
    // The client's own timeout ends each listing; this bounds the run should one hang anyway.
    let abandon = tokio::time::sleep(plan.timeout + GRACE);
    tokio::pin!(abandon);
    let mut ticks = tokio::time::interval_at(start + plan.sample_every, plan.sample_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outcomes = Vec::with_capacity(plan.listings);
    let mut outstanding: std::collections::BTreeSet<usize> = (0..plan.listings).collect();
    let mut first_error = None;
    while !listings.is_empty() {
        tokio::select! {
            joined = listings.join_next() => {
                let Some(joined) = joined else { break };
                let (i, (result, retry_after_s, error)) =
                    joined.context("a listing task panicked")?;
                outstanding.remove(&i);
                if first_error.is_none() && let Some(error) = error {
                    first_error = Some(format!("{result}: {error}"));
                }
                outcomes.push(Outcome {
                    replica: i % urls.len(),
                    ended_s: start.elapsed().as_secs_f64(),
                    result,
                    retry_after_s,
                });
            }
            _ = ticks.tick() => samples.push(sample(start).await?),
            () = &mut abandon => {
                let ended_s = start.elapsed().as_secs_f64();
                listings.abort_all();
                outcomes.extend(outstanding.iter().map(|i| Outcome {
                    replica: i % urls.len(),
                    ended_s,
                    result: "client_timeout".into(),
                    retry_after_s: None,
                }));
                break;
            }
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    samples.push(sample(start).await?);
    Ok(ListingsReport {
        kind: "listings".into(),
        targets: plan.targets.iter().map(ToString::to_string).collect(),
        listings: plan.listings,
        expect_count: plan.expect_count,
        budget_per_minute: plan.budget_per_minute,
        wall_s,
        outcomes,
        samples,
        first_error,
    })
}
