//! `loadgen storm`: N callers released at once (behind a barrier) on one install, spread over the
//! targets; reports how many got a token, how many distinct tokens they got, and the slowest
//! caller's latency.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use snykapps_proto::token_v1 as pb;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::LocalUrl;
use crate::client::{Bearer, connect_all};
use crate::drive::Failure;
use crate::latency::{Latencies, Summary, format_micros};

/// At most this many storm callers share one HTTP/2 connection: servers limit concurrent streams
/// per connection (hyper's default is 200), and callers beyond it would queue in the client and
/// measure our queue instead of the service.
pub const CALLERS_PER_CONNECTION: usize = 100;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// token-service replicas.
    pub targets: Vec<LocalUrl>,
    /// The internal-caller key.
    pub bearer: Bearer,
    /// The install every caller asks for.
    pub install_id: String,
    /// How many callers fire at once.
    pub callers: usize,
    /// How long a caller waits for its answer before it counts as failed.
    pub timeout: Duration,
}

/// What the storm did; the JSON line `loadgen storm` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StormReport {
    /// Always `storm`.
    pub kind: String,
    /// Where the callers went.
    pub targets: Vec<String>,
    /// Callers released at once.
    pub callers: usize,
    /// HTTP/2 connections per target.
    pub connections_per_target: usize,
    /// Callers that got a token.
    pub ok: u64,
    /// Callers that did not.
    pub errors: u64,
    /// Failures by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// How many different access tokens the callers got (1 when they all share one refresh).
    pub distinct_tokens: usize,
    /// The slowest caller, from the release to its answer, successful or not: the time until the
    /// last caller was served.
    pub slowest_us: u64,
    /// Latency of the successful callers.
    #[serde(flatten)]
    pub latency: Summary,
}

impl StormReport {
    /// One line for people.
    pub fn human(&self) -> String {
        let mut line = format!(
            "storm: {} callers, {} ok, {} errors, {} distinct token(s), slowest caller {} · {}",
            self.callers,
            self.ok,
            self.errors,
            self.distinct_tokens,
            format_micros(self.slowest_us),
            self.latency.human()
        );
        if let Some(first) = &self.first_error {
            line.push_str(&format!(" · first error: {first}"));
        }
        line
    }
}

/// How many connections per target keep every connection at or under
/// [`CALLERS_PER_CONNECTION`] callers.
pub fn connections_per_target(callers: usize, targets: usize) -> usize {
    let per_target = callers.div_ceil(targets.max(1));
    per_target.div_ceil(CALLERS_PER_CONNECTION).max(1)
}

/// Connects, releases the callers together, and reports.
pub async fn run(plan: Plan) -> anyhow::Result<StormReport> {
    let per_target = connections_per_target(plan.callers, plan.targets.len());
    let clients = connect_all(&plan.targets, per_target, &plan.bearer).await?;
    let request = pb::GetAccessTokenRequest {
        target: Some(pb::get_access_token_request::Target::InstallId(
            plan.install_id.clone(),
        )),
        min_validity_seconds: 0,
    };
    let barrier = Arc::new(Barrier::new(plan.callers));
    // Every caller's latency counts from the same moment, the release, so that the time a caller
    // spent waiting for a CPU to send its request is part of what it measured.
    let release = Arc::new(OnceLock::new());
    let mut callers = JoinSet::new();
    for i in 0..plan.callers {
        let mut client = clients[i % clients.len()].clone();
        let request = request.clone();
        let barrier = Arc::clone(&barrier);
        let release = Arc::clone(&release);
        let timeout = plan.timeout;
        callers.spawn(async move {
            barrier.wait().await;
            let released = *release.get_or_init(Instant::now);
            let answer = match tokio::time::timeout(timeout, client.get_access_token(request)).await
            {
                Ok(Ok(answer)) => Ok(answer.into_inner().access_token),
                Ok(Err(status)) => Err(Failure::from(status)),
                Err(_) => Err(Failure::new(
                    "client_timeout",
                    format!(
                        "no answer within {}",
                        format_micros(timeout.as_micros() as u64)
                    ),
                )),
            };
            (released.elapsed(), answer)
        });
    }

    let mut latencies = Latencies::new()?;
    // Tokens stay in memory only, to be counted; they are never printed.
    let mut tokens = HashSet::new();
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_error = None;
    let mut slowest = Duration::ZERO;
    while let Some(joined) = callers.join_next().await {
        let (elapsed, answer) = joined.context("a storm caller panicked")?;
        slowest = slowest.max(elapsed);
        match answer {
            Ok(token) => {
                latencies.record(elapsed);
                tokens.insert(token);
            }
            Err(failure) => {
                *error_kinds.entry(failure.kind.clone()).or_default() += 1;
                first_error.get_or_insert_with(|| format!("{}: {}", failure.kind, failure.message));
            }
        }
    }
    Ok(StormReport {
        kind: "storm".into(),
        targets: plan.targets.iter().map(LocalUrl::origin).collect(),
        callers: plan.callers,
        connections_per_target: per_target,
        ok: latencies.len(),
        errors: error_kinds.values().sum(),
        error_kinds,
        first_error,
        distinct_tokens: tokens.len(),
        slowest_us: u64::try_from(slowest.as_micros()).unwrap_or(u64::MAX),
        latency: latencies.summary(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_keep_streams_per_connection_bounded() {
        assert_eq!(connections_per_target(1000, 3), 4); // 334 callers per target
        assert_eq!(connections_per_target(100, 1), 1);
        assert_eq!(connections_per_target(101, 1), 2);
        assert_eq!(connections_per_target(1, 3), 1);
        assert_eq!(connections_per_target(5, 0), 1);
    }
}
