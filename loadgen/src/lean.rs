//! `loadgen lean-get-token`: the yardstick that `get-token` is held against.
//!
//! It does the least a tonic client can do per call: N tokio tasks over C shared [`Channel`]s,
//! each looping unary `GetAccessToken` with its own prebuilt request and header, counting
//! answers in two local integers. No clock read, no histogram, no timer, no shared counter per
//! call: a task checks one flag (read-mostly, never written until the end) between calls. The
//! only per-call work besides tonic's is cloning the request (tonic takes it by value) and the
//! reference-counted header value. What it measures is throughput and its own CPU time; a
//! `get-token` run against the same server says what latency recording costs on top.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use snykapps_proto::token_v1 as pb;
use snykapps_proto::token_v1::token_service_client::TokenServiceClient;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::args::{Budget, LocalUrl};
use crate::client::{Bearer, connect_channels};
use crate::drive::{GRACE, process_cpu_seconds};
use crate::latency::format_rate;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Targets (token-service replicas or echo servers); channels alternate over them.
    pub targets: Vec<LocalUrl>,
    /// The internal-caller key (the echo server ignores it).
    pub bearer: Bearer,
    /// The install asked for.
    pub install_id: String,
    /// Concurrent tasks (streams).
    pub concurrency: usize,
    /// HTTP/2 connections per target, shared by the tasks.
    pub connections_per_target: usize,
    /// The measured run's bounds: its duration, and a request count split evenly over the tasks.
    pub budget: Budget,
    /// How long the same loop runs, unmeasured, first (zero: no warm-up).
    pub warmup: Duration,
}

/// What the run did: the JSON line `loadgen lean-get-token` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeanReport {
    /// Always `lean-get-token`.
    pub kind: String,
    /// Where the load went.
    pub targets: Vec<String>,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Connections per target.
    pub connections_per_target: usize,
    /// The request bound.
    pub max_requests: u64,
    /// The duration bound, in seconds.
    pub max_duration_s: f64,
    /// Length of the unmeasured warm-up, in seconds.
    pub warmup_s: f64,
    /// Calls answered successfully during the warm-up.
    pub warmup_ok: u64,
    /// Calls answered successfully during the measured run.
    pub ok: u64,
    /// Calls that failed during the measured run (tasks still waiting after the grace period
    /// count once each).
    pub errors: u64,
    /// Wall time of the measured run, until the last task stopped.
    pub elapsed_s: f64,
    /// Successful calls per second of wall time.
    pub throughput_per_s: f64,
    /// CPU time (user + system) of this process during the measured run only; `None` where
    /// `/proc/self/stat` cannot be read.
    pub client_cpu_s: Option<f64>,
    /// `client_cpu_s` per successful call, in microseconds.
    pub client_cpu_per_call_us: Option<f64>,
}

impl LeanReport {
    /// One line for people.
    pub fn human(&self) -> String {
        let cpu = match (self.client_cpu_s, self.client_cpu_per_call_us) {
            (Some(s), Some(per)) => format!("client CPU {s:.2} s ({per:.1} µs per call)"),
            _ => "client CPU unknown".into(),
        };
        format!(
            "lean-get-token: {} ok, {} errors in {:.2} s ({} req/s, {} tasks over {} connection(s) per target) · {cpu}",
            self.ok,
            self.errors,
            self.elapsed_s,
            format_rate(self.throughput_per_s),
            self.concurrency,
            self.connections_per_target,
        )
    }
}

/// What one phase (warm-up or measured) counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    ok: u64,
    errors: u64,
}

/// Runs every task until `duration` passed or its share of `requests` is sent.
async fn phase(
    clients: &[TokenServiceClient<Channel>],
    plan: &Plan,
    request: &pb::GetAccessTokenRequest,
    requests: u64,
    duration: Duration,
) -> anyhow::Result<(Counts, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = plan.concurrency as u64;
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for i in 0..plan.concurrency {
        let mut client = clients[i % clients.len()].clone();
        let bearer = plan.bearer.unshared();
        let request = request.clone();
        let stop = Arc::clone(&stop);
        // Task i sends requests / tasks calls, the first requests % tasks one more.
        let quota = requests / tasks + u64::from((i as u64) < requests % tasks);
        workers.spawn(async move {
            let mut counts = Counts::default();
            let mut sent = 0;
            while sent < quota && !stop.load(Ordering::Relaxed) {
                sent += 1;
                match client
                    .get_access_token(bearer.request(request.clone()))
                    .await
                {
                    Ok(_) => counts.ok += 1,
                    Err(_) => counts.errors += 1,
                }
            }
            counts
        });
    }
    let deadline = start + duration;
    let mut total = Counts::default();
    // Until the deadline the tasks run; from then on they stop after their call in flight, which
    // may take up to GRACE before the stragglers are abandoned (and counted as errors).
    let mut abandon = None;
    loop {
        let until = abandon.unwrap_or(deadline);
        match tokio::time::timeout_at(until, workers.join_next()).await {
            Ok(Some(joined)) => {
                let counts = joined.context("a lean worker panicked")?;
                total.ok += counts.ok;
                total.errors += counts.errors;
            }
            Ok(None) => break,
            Err(_) if abandon.is_none() => {
                stop.store(true, Ordering::Relaxed);
                abandon = Some(deadline + GRACE);
            }
            Err(_) => {
                total.errors += workers.len() as u64;
                workers.abort_all();
                break;
            }
        }
    }
    Ok((total, start.elapsed()))
}

/// Connects, warms up, runs, and reports.
pub async fn run(plan: Plan) -> anyhow::Result<LeanReport> {
    let channels = connect_channels(&plan.targets, plan.connections_per_target).await?;
    let clients: Vec<_> = channels.into_iter().map(TokenServiceClient::new).collect();
    let request = pb::GetAccessTokenRequest {
        target: Some(pb::get_access_token_request::Target::InstallId(
            plan.install_id.clone(),
        )),
        min_validity_seconds: 0,
    };
    let mut warmup_ok = 0;
    if !plan.warmup.is_zero() {
        let (counts, _) = phase(&clients, &plan, &request, u64::MAX, plan.warmup).await?;
        if counts.ok == 0 {
            anyhow::bail!(
                "every warm-up call failed ({} errors): is the target a TokenService that knows the install and the key?",
                counts.errors
            );
        }
        warmup_ok = counts.ok;
    }
    let cpu_before = process_cpu_seconds();
    let (counts, elapsed) = phase(
        &clients,
        &plan,
        &request,
        plan.budget.requests,
        plan.budget.duration,
    )
    .await?;
    let client_cpu_s = cpu_before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before);
    let secs = elapsed.as_secs_f64();
    Ok(LeanReport {
        kind: "lean-get-token".into(),
        targets: plan.targets.iter().map(LocalUrl::origin).collect(),
        concurrency: plan.concurrency,
        connections_per_target: plan.connections_per_target,
        max_requests: plan.budget.requests,
        max_duration_s: plan.budget.duration.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        warmup_ok,
        ok: counts.ok,
        errors: counts.errors,
        elapsed_s: secs,
        throughput_per_s: if secs > 0.0 {
            counts.ok as f64 / secs
        } else {
            0.0
        },
        client_cpu_s,
        client_cpu_per_call_us: client_cpu_s
            .filter(|_| counts.ok > 0)
            .map(|s| s * 1e6 / counts.ok as f64),
    })
}
