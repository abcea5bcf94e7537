//! `loadgen get-token`: closed-loop `GetAccessToken` calls from N streams round-robined over one or
//! more targets (token-service replicas, or the echo server).

use snykapps_proto::token_v1 as pb;

use crate::args::{Budget, LocalUrl};
use crate::client::{Bearer, Client, connect_all};
use crate::drive::{Failure, Operation, RunReport, drive};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// token-service replicas (or echo servers).
    pub targets: Vec<LocalUrl>,
    /// The internal-caller key.
    pub bearer: Bearer,
    /// The install whose token is asked for.
    pub install_id: String,
    /// `min_validity_seconds` of every request.
    pub min_validity_seconds: u32,
    /// Concurrent streams.
    pub concurrency: usize,
    /// HTTP/2 connections per target, shared by the streams.
    pub connections_per_target: usize,
    /// The measured run's bounds.
    pub budget: Budget,
    /// Requests sent (on the same connections) before measuring; 0 for none.
    pub warmup: u64,
}

/// One stream: a client (a handle on a shared connection) and the request it repeats.
#[derive(Debug)]
struct GetToken {
    client: Client,
    request: pb::GetAccessTokenRequest,
}

impl Operation for GetToken {
    async fn call(&mut self) -> Result<u64, Failure> {
        let answer = self.client.get_access_token(self.request.clone()).await?;
        if answer.get_ref().access_token.is_empty() {
            return Err(Failure::new(
                "empty_token",
                "the answer had no access token",
            ));
        }
        Ok(0)
    }
}

/// Connects, warms up, runs, and reports.
pub async fn run(plan: Plan) -> anyhow::Result<RunReport> {
    let clients = connect_all(&plan.targets, plan.connections_per_target, &plan.bearer).await?;
    let request = pb::GetAccessTokenRequest {
        target: Some(pb::get_access_token_request::Target::InstallId(
            plan.install_id.clone(),
        )),
        min_validity_seconds: plan.min_validity_seconds,
    };
    // Stream i uses client i mod n: clients alternate targets, so streams do too.
    let workers = plan
        .concurrency
        .min(usize::try_from(plan.budget.requests).unwrap_or(usize::MAX));
    let ops: Vec<GetToken> = (0..workers)
        .map(|i| GetToken {
            client: clients[i % clients.len()].clone(),
            request: request.clone(),
        })
        .collect();
    let ops = if plan.warmup > 0 {
        let warmup = Budget {
            requests: plan.warmup,
            duration: plan.budget.duration,
        };
        let (ops, tally) = drive(ops, warmup).await?;
        if tally.ok == 0 {
            anyhow::bail!(
                "every warm-up request failed; first error: {}",
                tally.first_error.as_deref().unwrap_or("none")
            );
        }
        ops
    } else {
        ops
    };
    let (_, tally) = drive(ops, plan.budget).await?;
    Ok(tally.report(
        "get-token",
        plan.targets.iter().map(LocalUrl::origin).collect(),
        workers,
        plan.connections_per_target,
        plan.budget,
    ))
}
