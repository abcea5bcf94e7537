//! The closed loop shared by the load subcommands: each worker sends its next request as soon as
//! the previous one answered, until the request budget or the duration runs out (whichever comes
//! first), and records the latency of every successful request.
//!
//! The loop is kept as cheap as `lean-get-token`'s ([`crate::lean`]), so that `get-token` measures
//! the server and not itself: per call one clock read (the end of one call is the start of the
//! next), one relaxed `fetch_add` on the shared ticket counter (which also picks the request, see
//! [`Operation::call`]), and a sample in the worker's own histogram; the histograms are merged
//! when the workers stop. The grace period is one timer per worker, raced against each call, not
//! a timer per call.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::Budget;
use crate::latency::{Latencies, Summary, format_micros, format_rate};

/// How long calls still in flight at the end of the duration may take before they are abandoned
/// (and counted as `client_timeout`), so that a hung server cannot hang the run.
pub const GRACE: Duration = Duration::from_secs(5);

/// Why one request failed: a short stable `kind` to count by, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `Unavailable`, `http_503`, `count_mismatch`, …
    pub kind: String,
    /// What went wrong, for the first failure of each kind.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self::new(format!("{:?}", status.code()), status.message())
    }
}

/// One worker's request: called again and again by the loop.
pub trait Operation: Send + 'static {
    /// Sends one request and checks the answer; `Ok(n)` counts `n` items received (0 when the
    /// operation has no notion of items). `ticket` numbers the run's requests from 0, over all
    /// workers, each number used once: an operation that spreads its calls over several inputs
    /// (`get-token --installs-file`) picks input `ticket % inputs`, so a run of N requests over N
    /// inputs asks for each exactly once.
    fn call(&mut self, ticket: u64) -> impl Future<Output = Result<u64, Failure>> + Send;
}

/// What a run did; serialized as the one JSON line a load subcommand prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The subcommand: `get-token`, `http`, `page`.
    pub kind: String,
    /// Where the load went.
    pub targets: Vec<String>,
    /// Concurrent workers (streams).
    pub concurrency: usize,
    /// Connections per target (gRPC) or 0 (HTTP: the client pools them).
    pub connections_per_target: usize,
    /// The request bound.
    pub max_requests: u64,
    /// The duration bound, in seconds.
    pub max_duration_s: f64,
    /// Requests answered successfully.
    pub ok: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Failures by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
    /// Wall time of the measured part.
    pub elapsed_s: f64,
    /// Successful requests per second of wall time.
    pub throughput_per_s: f64,
    /// `requests` or `duration`: the bound that ended the run.
    pub stopped_by: String,
    /// Items received per successful request (projects per listing), when the operation counts.
    pub items_per_request: Option<u64>,
    /// CPU time (user + system) the loadgen process used for the whole command, warm-up
    /// included; `None` where `/proc/self/stat` cannot be read.
    #[serde(default)]
    pub client_cpu_s: Option<f64>,
    /// Requests answered successfully during the unmeasured warm-up (0 without one): with `ok`,
    /// what a server answered during the whole command, to divide its CPU time by.
    #[serde(default)]
    pub warmup_ok: u64,
    /// How many installs the requests cycled through (`get-token`), when the operation has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installs: Option<usize>,
    /// Latency of the successful requests.
    #[serde(flatten)]
    pub latency: Summary,
}

impl RunReport {
    /// One line for people.
    pub fn human(&self) -> String {
        let mut line = format!(
            "{}: {} ok, {} errors in {:.2} s ({} req/s, {} workers) · {}",
            self.kind,
            self.ok,
            self.errors,
            self.elapsed_s,
            format_rate(self.throughput_per_s),
            self.concurrency,
            self.latency.human()
        );
        if let Some(items) = self.items_per_request {
            line.push_str(&format!(" · {items} items per request"));
        }
        if let Some(first) = &self.first_error {
            line.push_str(&format!(" · first error: {first}"));
        }
        line
    }
}

/// The combined result of the workers.
#[derive(Debug)]
pub struct Tally {
    /// Latencies of successful requests.
    pub latencies: Latencies,
    /// Successful requests.
    pub ok: u64,
    /// Failures by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first failure seen.
    pub first_error: Option<String>,
    /// Items per successful request, if all agreed; `None` if none counted or they differed.
    pub items: Option<u64>,
    /// Whether an item count differed between requests.
    pub items_differ: bool,
    /// Wall time from start until the last worker stopped.
    pub elapsed: Duration,
    /// Whether the request budget (rather than the duration) ended the run.
    pub stopped_by_requests: bool,
}

impl Tally {
    fn empty() -> anyhow::Result<Self> {
        Ok(Self {
            latencies: Latencies::new()?,
            ok: 0,
            error_kinds: BTreeMap::new(),
            first_error: None,
            items: None,
            items_differ: false,
            elapsed: Duration::ZERO,
            stopped_by_requests: false,
        })
    }

    fn fail(&mut self, failure: Failure) {
        *self.error_kinds.entry(failure.kind.clone()).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {}", failure.kind, failure.message));
        }
    }

    fn items(&mut self, n: u64) {
        match self.items {
            None => self.items = Some(n),
            Some(seen) if seen != n => self.items_differ = true,
            Some(_) => {}
        }
    }

    fn absorb(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latencies.merge(&other.latencies)?;
        self.ok += other.ok;
        for (kind, n) in other.error_kinds {
            *self.error_kinds.entry(kind).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if let Some(n) = other.items {
            self.items(n);
        }
        self.items_differ |= other.items_differ;
        Ok(())
    }

    /// Failed requests.
    pub fn errors(&self) -> u64 {
        self.error_kinds.values().sum()
    }

    /// The report of this run.
    pub fn report(
        &self,
        kind: &str,
        targets: Vec<String>,
        concurrency: usize,
        connections_per_target: usize,
        budget: Budget,
    ) -> RunReport {
        let secs = self.elapsed.as_secs_f64();
        RunReport {
            kind: kind.to_owned(),
            targets,
            concurrency,
            connections_per_target,
            max_requests: budget.requests,
            max_duration_s: budget.duration.as_secs_f64(),
            ok: self.ok,
            errors: self.errors(),
            error_kinds: self.error_kinds.clone(),
            first_error: self.first_error.clone(),
            elapsed_s: secs,
            throughput_per_s: if secs > 0.0 {
                self.ok as f64 / secs
            } else {
                0.0
            },
            stopped_by: if self.stopped_by_requests {
                "requests".into()
            } else {
                "duration".into()
            },
            items_per_request: if self.items_differ { None } else { self.items },
            client_cpu_s: process_cpu_seconds(),
            warmup_ok: 0,
            installs: None,
            latency: self.latencies.summary(),
        }
    }
}

/// CPU time (user + system, all threads) this process has used so far, from `/proc/self/stat`.
pub fn process_cpu_seconds() -> Option<f64> {
    parse_proc_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The fields are in clock ticks of
/// `USER_HZ`, which Linux fixes at 100 on every architecture it exposes to user space (reading
/// `sysconf(_SC_CLK_TCK)` would need `libc` and `unsafe` for a constant).
pub fn parse_proc_stat_cpu(stat: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Runs one worker per operation until `budget` is spent; gives the operations back (so that a
/// warm-up run can hand its connections to the measured run).
pub async fn drive<O: Operation>(ops: Vec<O>, budget: Budget) -> anyhow::Result<(Vec<O>, Tally)> {
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + budget.duration;
    let abandon = deadline + GRACE;
    let mut workers = JoinSet::new();
    for mut op in ops {
        let issued = Arc::clone(&issued);
        workers.spawn(async move {
            let mut tally = Tally::empty()?;
            // One timer for the worker's whole run (registered when first polled), instead of a
            // `timeout_at` per call, which would insert and remove a timer entry every call.
            let abandoned = tokio::time::sleep_until(abandon);
            tokio::pin!(abandoned);
            let mut now = Instant::now();
            while now < deadline {
                let ticket = issued.fetch_add(1, Ordering::Relaxed);
                if ticket >= budget.requests {
                    break;
                }
                let sent = now;
                let answered = tokio::select! {
                    biased;
                    answer = op.call(ticket) => Some(answer),
                    () = &mut abandoned => None,
                };
                now = Instant::now();
                match answered {
                    Some(Ok(items)) => {
                        tally.latencies.record(now.saturating_duration_since(sent));
                        tally.ok += 1;
                        if items > 0 {
                            tally.items(items);
                        }
                    }
                    Some(Err(failure)) => tally.fail(failure),
                    None => {
                        tally.fail(Failure::new(
                            "client_timeout",
                            format!(
                                "no answer {} after the end of the run",
                                format_micros(GRACE.as_micros() as u64)
                            ),
                        ));
                        break;
                    }
                }
            }
            Ok::<_, anyhow::Error>((op, tally))
        });
    }
    let mut total = Tally::empty()?;
    let mut ops = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let (op, tally) = joined.context("a load worker panicked")??;
        total.absorb(tally)?;
        ops.push(op);
    }
    total.elapsed = start.elapsed();
    // Each worker takes one ticket too many on its way out when the budget ends the run.
    total.stopped_by_requests = issued.load(Ordering::Relaxed) >= budget.requests;
    Ok((ops, total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Sleeps, then fails every `fail_every`-th call.
    struct Fake {
        calls: u64,
        sleep: Duration,
        fail_every: u64,
    }

    impl Operation for Fake {
        async fn call(&mut self, _ticket: u64) -> Result<u64, Failure> {
            self.calls += 1;
            tokio::time::sleep(self.sleep).await;
            if self.fail_every > 0 && self.calls.is_multiple_of(self.fail_every) {
                return Err(Failure::new("Boom", "injected"));
            }
            Ok(7)
        }
    }

    fn fakes(n: usize, sleep: Duration, fail_every: u64) -> Vec<Fake> {
        (0..n)
            .map(|_| Fake {
                calls: 0,
                sleep,
                fail_every,
            })
            .collect()
    }

    #[test]
    fn cpu_time_comes_from_utime_and_stime() {
        let line = "4242 (tok en) (x)) S 1 2 3 4 5 6 7 8 9 10 250 75 11 12 20 0 8 0 99 1 2";
        assert_eq!(parse_proc_stat_cpu(line), Some(3.25));
        assert_eq!(parse_proc_stat_cpu("4242 (x) S 1 2"), None);
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
    }

    #[tokio::test]
    async fn the_request_bound_stops_the_run() {
        let budget = Budget::new(100, 60.0).unwrap();
        let (ops, tally) = drive(fakes(4, Duration::ZERO, 10), budget).await.unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(tally.ok + tally.errors(), 100);
        assert_eq!(ops.iter().map(|o| o.calls).sum::<u64>(), 100);
        assert!(tally.stopped_by_requests);
        let report = tally.report("test", vec![], 4, 1, budget);
        assert_eq!(report.stopped_by, "requests");
        assert_eq!(report.items_per_request, Some(7));
        assert_eq!(report.error_kinds.get("Boom").copied(), Some(report.errors));
        assert_eq!(report.first_error.as_deref(), Some("Boom: injected"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_duration_bound_stops_the_run() {
        let budget = Budget::new(u64::MAX, 1.0).unwrap();
        let (_, tally) = drive(fakes(2, Duration::from_millis(100), 0), budget)
            .await
            .unwrap();
        // 2 workers x 10 calls of 100 ms in 1 s (the clock is virtual).
        assert_eq!(tally.ok, 20);
        assert!(!tally.stopped_by_requests);
        let report = tally.report("test", vec![], 2, 1, budget);
        assert_eq!(report.stopped_by, "duration");
        assert!((report.throughput_per_s - 20.0).abs() < 0.5, "{report:?}");
        assert!((100_000..=100_200).contains(&report.latency.p50_us));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_call_is_abandoned_after_the_grace_period() {
        let budget = Budget::new(10, 1.0).unwrap();
        let (_, tally) = drive(fakes(1, Duration::from_secs(3600), 0), budget)
            .await
            .unwrap();
        assert_eq!(tally.ok, 0);
        assert_eq!(tally.error_kinds.get("client_timeout").copied(), Some(1));
        assert!(tally.elapsed <= Duration::from_secs(1) + GRACE + Duration::from_millis(10));
    }
}
