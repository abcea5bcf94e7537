//! `loadgen get-token`: closed-loop `GetAccessToken` calls from N streams round-robined over one or
//! more targets (token-service replicas, or the echo server), for one install or cycling through
//! many (`--installs-file`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use snykapps_proto::token_v1 as pb;
use snykapps_proto::token_v1::token_service_client::TokenServiceClient;
use tonic::transport::Channel;

use crate::args::{Budget, LocalUrl};
use crate::client::{Bearer, connect_channels};
use crate::drive::{Failure, Operation, RunReport, drive};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// token-service replicas (or echo servers).
    pub targets: Vec<LocalUrl>,
    /// The internal-caller key.
    pub bearer: Bearer,
    /// The installs whose tokens are asked for: request `n` of a run asks for install
    /// `n % install_ids.len()`, so a run of as many requests as installs asks for each once.
    pub install_ids: Vec<String>,
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

/// Install ids from a file: the first word of each non-empty line (so both a plain list and the
/// `INSTALL_ID FIRST_ORG_ID` lines of `loadgen install` work); lines starting with `#` are skipped.
pub fn read_installs_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ids = parse_installs(&text);
    if ids.is_empty() {
        anyhow::bail!("{} holds no install id", path.display());
    }
    Ok(ids)
}

fn parse_installs(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// One stream: a client on a shared connection, its own copy of the header, and the requests
/// (shared, read-only) it picks from by ticket. The header goes straight onto each request, as
/// `lean-get-token` does it, rather than through an interceptor (which takes every request apart
/// and puts it together again; no difference showed in the measurements, but it is work).
#[derive(Debug)]
struct GetToken {
    client: TokenServiceClient<Channel>,
    bearer: Bearer,
    requests: Arc<[pb::GetAccessTokenRequest]>,
}

impl Operation for GetToken {
    async fn call(&mut self, ticket: u64) -> Result<u64, Failure> {
        let request = match self.requests.len() {
            1 => &self.requests[0],
            n => &self.requests[(ticket % n as u64) as usize],
        };
        let answer = self
            .client
            .get_access_token(self.bearer.request(request.clone()))
            .await?;
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
    if plan.install_ids.is_empty() {
        anyhow::bail!("no install to ask for");
    }
    let channels = connect_channels(&plan.targets, plan.connections_per_target).await?;
    let requests: Arc<[pb::GetAccessTokenRequest]> = plan
        .install_ids
        .iter()
        .map(|id| pb::GetAccessTokenRequest {
            target: Some(pb::get_access_token_request::Target::InstallId(id.clone())),
            min_validity_seconds: plan.min_validity_seconds,
        })
        .collect();
    // Stream i uses channel i mod n: channels alternate targets, so streams do too.
    let workers = plan
        .concurrency
        .min(usize::try_from(plan.budget.requests).unwrap_or(usize::MAX));
    let ops: Vec<GetToken> = (0..workers)
        .map(|i| GetToken {
            client: TokenServiceClient::new(channels[i % channels.len()].clone()),
            bearer: plan.bearer.unshared(),
            requests: Arc::clone(&requests),
        })
        .collect();
    let mut warmup_ok = 0;
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
        warmup_ok = tally.ok;
        ops
    } else {
        ops
    };
    let (_, tally) = drive(ops, plan.budget).await?;
    let mut report = tally.report(
        "get-token",
        plan.targets.iter().map(LocalUrl::origin).collect(),
        workers,
        plan.connections_per_target,
        plan.budget,
    );
    report.warmup_ok = warmup_ok;
    report.installs = Some(plan.install_ids.len());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_files_take_the_first_word_of_each_line() {
        let text = "# made by loadgen install --count 3\n\
                    a1 org-1\n\n  b2  \r\nc3\tx y\n";
        assert_eq!(parse_installs(text), ["a1", "b2", "c3"]);
        assert!(parse_installs("\n# only a comment\n").is_empty());
    }
}
