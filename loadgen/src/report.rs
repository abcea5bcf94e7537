//! `loadgen report`: turns the files a `scripts/bench` run leaves in its results directory into the
//! Markdown tables of `docs/benchmarks.md`, and checks the storm's invariants. Every number in the
//! tables comes from those files.
//!
//! | file | written by |
//! |---|---|
//! | `get-token-1.json`, `get-token-3.json` | `loadgen get-token` against 1 and 3 replicas |
//! | `echo.json` | `loadgen get-token` against the echo server |
//! | `echo-nodelay.json` | the same against `loadgen echo-server --nodelay` (optional) |
//! | `redis-benchmark.txt` | `redis-benchmark -t get -n 100000 -q` |
//! | `storm.json` | `loadgen storm` |
//! | `storm-stats-before.json`, `storm-stats-after.json` | `loadgen fake-stats` around the storm |
//! | `projects-service.json` | `loadgen http` on projects-service's listing |
//! | `fake-direct.json` | `loadgen page` straight from the fake |
//! | `memory.tsv` | the script: `process<TAB>VmHWM in kB` per line |
//! | `cpu.tsv` | the script: `run<TAB>process<TAB>CPU seconds` per line, `run` being one of the JSON files' stems (`get-token-1`, …) |

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::drive::RunReport;
use crate::latency::{format_micros, format_rate, group_thousands};
use crate::storm::StormReport;

/// The parsed results of one bench run; `None` where a file is missing (scenario not run).
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Scenario 1, one replica.
    pub one_replica: Option<RunReport>,
    /// Scenario 1, three replicas.
    pub three_replicas: Option<RunReport>,
    /// Scenario 2, the bare echo server.
    pub echo: Option<RunReport>,
    /// Scenario 2, the bare echo server with `TCP_NODELAY` on its accepted sockets.
    pub echo_nodelay: Option<RunReport>,
    /// Scenario 2, redis-benchmark.
    pub redis: Option<RedisBench>,
    /// Scenario 3.
    pub storm: Option<StormReport>,
    /// Scenario 3, `/_fake/stats` just before the storm.
    pub stats_before: Option<Value>,
    /// Scenario 3, `/_fake/stats` just after the storm.
    pub stats_after: Option<Value>,
    /// Scenario 4, through projects-service.
    pub projects_service: Option<RunReport>,
    /// Scenario 4, straight from the fake.
    pub direct: Option<RunReport>,
    /// Scenario 5: `(process, VmHWM in KiB)`.
    pub memory: Vec<(String, u64)>,
    /// CPU seconds the servers used during a run: `(run, process, seconds)`.
    pub cpu: Vec<(String, String, f64)>,
}

/// The quiet output of `redis-benchmark -t get -q`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedisBench {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, when redis-benchmark printed it (version 6.2 and later).
    pub p50_us: Option<u64>,
}

/// Parses the last `GET: 123.45 requests per second, p50=0.135 msec` line (progress lines are
/// separated by carriage returns).
pub fn parse_redis_benchmark(output: &str) -> Option<RedisBench> {
    let line = output
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?;
    let after_colon = line.split_once(':')?.1.trim_start();
    let rps: f64 = after_colon.split_whitespace().next()?.parse().ok()?;
    let p50_us = line
        .split_once("p50=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|ms| ms.parse::<f64>().ok())
        .map(|ms| (ms * 1000.0).round() as u64);
    Some(RedisBench { rps, p50_us })
}

fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> anyhow::Result<Option<T>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            // The JSON line is the last non-empty line (a tool may print more before it).
            let line = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            let value = serde_json::from_str(line)
                .with_context(|| format!("{} does not hold the expected JSON", path.display()))?;
            Ok(Some(value))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl Results {
    /// Reads whatever the run left in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let redis = match std::fs::read_to_string(dir.join("redis-benchmark.txt")) {
            Ok(text) => Some(
                parse_redis_benchmark(&text)
                    .with_context(|| format!("cannot read redis-benchmark's output: {text:?}"))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("cannot read redis-benchmark.txt"),
        };
        let memory = match std::fs::read_to_string(dir.join("memory.tsv")) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let (name, kib) = l
                        .rsplit_once('\t')
                        .with_context(|| format!("memory.tsv: bad line {l:?}"))?;
                    let kib = kib
                        .trim()
                        .parse()
                        .with_context(|| format!("memory.tsv: bad number in {l:?}"))?;
                    Ok((name.to_owned(), kib))
                })
                .collect::<anyhow::Result<_>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).context("cannot read memory.tsv"),
        };
        let cpu = match std::fs::read_to_string(dir.join("cpu.tsv")) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let mut parts = l.split('\t');
                    match (parts.next(), parts.next(), parts.next().map(str::trim)) {
                        (Some(run), Some(process), Some(secs)) => Ok((
                            run.to_owned(),
                            process.to_owned(),
                            secs.parse()
                                .with_context(|| format!("cpu.tsv: bad number in {l:?}"))?,
                        )),
                        _ => anyhow::bail!("cpu.tsv: bad line {l:?}"),
                    }
                })
                .collect::<anyhow::Result<_>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).context("cannot read cpu.tsv"),
        };
        Ok(Self {
            one_replica: read_json(dir, "get-token-1.json")?,
            three_replicas: read_json(dir, "get-token-3.json")?,
            echo: read_json(dir, "echo.json")?,
            echo_nodelay: read_json(dir, "echo-nodelay.json")?,
            redis,
            storm: read_json(dir, "storm.json")?,
            stats_before: read_json(dir, "storm-stats-before.json")?,
            stats_after: read_json(dir, "storm-stats-after.json")?,
            projects_service: read_json(dir, "projects-service.json")?,
            direct: read_json(dir, "fake-direct.json")?,
            memory,
            cpu,
        })
    }

    /// The load run a `cpu.tsv` run name stands for, and how the table calls it.
    fn run_named(&self, run: &str) -> Option<(&RunReport, &'static str)> {
        match run {
            "get-token-1" => self.one_replica.as_ref().map(|r| (r, "1, one replica")),
            "get-token-3" => self
                .three_replicas
                .as_ref()
                .map(|r| (r, "1, three replicas")),
            "echo" => self.echo.as_ref().map(|r| (r, "2, echo server")),
            "echo-nodelay" => self
                .echo_nodelay
                .as_ref()
                .map(|r| (r, "2, echo server, TCP_NODELAY")),
            "projects-service" => self
                .projects_service
                .as_ref()
                .map(|r| (r, "4, through projects-service")),
            "fake-direct" => self
                .direct
                .as_ref()
                .map(|r| (r, "4, straight from the fake")),
            _ => None,
        }
    }
}

/// The rendered tables and the checks that failed (empty when every invariant held).
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Markdown.
    pub markdown: String,
    /// One line per failed check or missing scenario.
    pub failures: Vec<String>,
}

/// A counter of `/_fake/stats` by JSON path, 0 when absent.
fn counter(stats: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(stats, |v, key| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn ratio(numerator: f64, denominator: f64) -> String {
    if denominator > 0.0 && numerator.is_finite() {
        format!("{:.2}×", numerator / denominator)
    } else {
        "n/a".into()
    }
}

fn run_row(out: &mut String, number: &str, label: &str, run: Option<&RunReport>, unit: &str) {
    match run {
        Some(r) => {
            let _ = writeln!(
                out,
                "| {number} | {label} ({} concurrent) | {} | {} | {} {unit}/s | {} | {} | {} | {} |",
                r.concurrency,
                group_thousands(r.ok),
                group_thousands(r.errors),
                format_rate(r.throughput_per_s),
                format_micros(r.latency.p50_us),
                format_micros(r.latency.p99_us),
                format_micros(r.latency.p999_us),
                format_micros(r.latency.max_us),
            );
        }
        None => {
            let _ = writeln!(out, "| {number} | {label} | not run | | | | | | |");
        }
    }
}

/// Renders the tables; `token_latency_ms` is the latency injected at the fake's token endpoint
/// during the storm.
pub fn render(results: &Results, token_latency_ms: u64) -> Rendered {
    let mut out = String::new();
    let mut failures = Vec::new();
    let mut missing = |what: &str, present: bool| {
        if !present {
            failures.push(format!("{what}: no result (scenario not run or failed)"));
        }
    };
    missing("scenario 1, one replica", results.one_replica.is_some());
    missing(
        "scenario 1, three replicas",
        results.three_replicas.is_some(),
    );
    missing("scenario 2, echo server", results.echo.is_some());
    missing("scenario 2, redis-benchmark", results.redis.is_some());
    missing("scenario 3, storm", results.storm.is_some());
    missing(
        "scenario 3, fake stats",
        results.stats_before.is_some() && results.stats_after.is_some(),
    );
    missing(
        "scenario 4, projects-service",
        results.projects_service.is_some(),
    );
    missing("scenario 4, direct", results.direct.is_some());
    missing("scenario 5, memory", !results.memory.is_empty());

    out.push_str("### Throughput and latency\n\n");
    out.push_str(
        "| # | scenario | ok | errors | throughput | p50 | p99 | p99.9 | max |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    run_row(
        &mut out,
        "1",
        "`GetAccessToken`, no refresh due, 1 replica",
        results.one_replica.as_ref(),
        "req",
    );
    run_row(
        &mut out,
        "1",
        "`GetAccessToken`, no refresh due, 3 replicas",
        results.three_replicas.as_ref(),
        "req",
    );
    run_row(
        &mut out,
        "2",
        "bare tonic echo server, same proto",
        results.echo.as_ref(),
        "req",
    );
    if results.echo_nodelay.is_some() {
        run_row(
            &mut out,
            "2",
            "the echo server with `TCP_NODELAY` on accepted sockets",
            results.echo_nodelay.as_ref(),
            "req",
        );
    }
    match &results.redis {
        Some(r) => {
            let _ = writeln!(
                out,
                "| 2 | `redis-benchmark -t get -n 100000 -q` (storage floor, 50 clients) | n/a | n/a | {} req/s | {} | | | |",
                format_rate(r.rps),
                r.p50_us.map(format_micros).unwrap_or_else(|| "n/a".into()),
            );
        }
        None => out.push_str("| 2 | `redis-benchmark -t get` | not run | | | | | | |\n"),
    }
    let items = |r: Option<&RunReport>| {
        r.and_then(|r| r.items_per_request)
            .map(|n| format!("{} projects", group_thousands(n)))
            .unwrap_or_else(|| "projects".into())
    };
    run_row(
        &mut out,
        "4",
        &format!(
            "listing of {} through projects-service",
            items(results.projects_service.as_ref())
        ),
        results.projects_service.as_ref(),
        "listings",
    );
    run_row(
        &mut out,
        "4",
        &format!(
            "the same listing paged straight from the fake (`limit=100`), {}",
            items(results.direct.as_ref())
        ),
        results.direct.as_ref(),
        "listings",
    );

    out.push_str(
        "\n### Ratios and checks\n\n| # | measure | value | expected |\n|---|---|---:|---|\n",
    );
    let mut row = |n: &str, measure: &str, value: String, expected: &str| {
        let _ = writeln!(out, "| {n} | {measure} | {value} | {expected} |");
    };
    if let (Some(ts), Some(echo)) = (&results.one_replica, &results.echo) {
        row(
            "2",
            "token-service (1 replica) / bare gRPC, throughput",
            ratio(ts.throughput_per_s, echo.throughput_per_s),
            "",
        );
        row(
            "2",
            "token-service (1 replica) / bare gRPC, p50 latency",
            ratio(ts.latency.p50_us as f64, echo.latency.p50_us as f64),
            "",
        );
        row(
            "2",
            "token-service (1 replica) / bare gRPC, p99 latency",
            ratio(ts.latency.p99_us as f64, echo.latency.p99_us as f64),
            "",
        );
    }
    if let (Some(nagle), Some(nodelay)) = (&results.echo, &results.echo_nodelay) {
        row(
            "2",
            "bare gRPC, accepted sockets as tonic leaves them / with `TCP_NODELAY`, p99 latency",
            ratio(nagle.latency.p99_us as f64, nodelay.latency.p99_us as f64),
            "",
        );
    }
    if let (Some(one), Some(three)) = (&results.one_replica, &results.three_replicas) {
        row(
            "1",
            "3 replicas / 1 replica, throughput (same 2 cores)",
            ratio(three.throughput_per_s, one.throughput_per_s),
            "",
        );
    }
    if let (Some(ts), Some(redis)) = (&results.one_replica, &results.redis) {
        row(
            "2",
            "token-service (1 replica) / `redis-benchmark` GET, throughput",
            ratio(ts.throughput_per_s, redis.rps),
            "",
        );
    }
    if let Some(storm) = &results.storm {
        let ok = storm.errors == 0 && storm.ok == storm.callers as u64;
        row(
            "3",
            &format!(
                "storm over {} replicas: callers ok / failed",
                storm.targets.len()
            ),
            format!(
                "{} / {}",
                group_thousands(storm.ok),
                group_thousands(storm.errors)
            ),
            &format!("{} / 0 {}", group_thousands(storm.callers as u64), mark(ok)),
        );
        if !ok {
            failures.push(format!(
                "storm: {} of {} callers failed ({:?}; first: {})",
                storm.errors,
                storm.callers,
                storm.error_kinds,
                storm.first_error.as_deref().unwrap_or("-")
            ));
        }
        row(
            "3",
            "distinct access tokens handed out",
            storm.distinct_tokens.to_string(),
            &format!("1 {}", mark(storm.distinct_tokens == 1)),
        );
        if storm.distinct_tokens != 1 {
            failures.push(format!(
                "storm: callers got {} distinct tokens, not 1",
                storm.distinct_tokens
            ));
        }
    }
    if let (Some(before), Some(after)) = (&results.stats_before, &results.stats_after) {
        let refreshes = counter(after, &["token_calls", "refresh_token"])
            .saturating_sub(counter(before, &["token_calls", "refresh_token"]));
        let reuses = counter(after, &["spent_refresh_token_reuses"]);
        row(
            "3",
            "token-endpoint refresh calls during the storm (`/_fake/stats`)",
            refreshes.to_string(),
            &format!("1 {}", mark(refreshes == 1)),
        );
        row(
            "3",
            "spent refresh-token reuses (`/_fake/stats`)",
            reuses.to_string(),
            &format!("0 {}", mark(reuses == 0)),
        );
        if refreshes != 1 {
            failures.push(format!(
                "storm: {refreshes} refresh calls reached the token endpoint, not 1 (before: {before}, after: {after})"
            ));
        }
        if reuses != 0 {
            failures.push(format!(
                "storm: {reuses} spent refresh tokens were presented again (after: {after})"
            ));
        }
    }
    if let Some(storm) = &results.storm {
        let injected_us = token_latency_ms * 1000;
        row(
            "3",
            "slowest caller vs injected token-endpoint latency",
            format!(
                "{} vs {} ({})",
                format_micros(storm.slowest_us),
                format_micros(injected_us),
                ratio(storm.slowest_us as f64, injected_us as f64)
            ),
            "",
        );
    }
    if let (Some(ps), Some(direct)) = (&results.projects_service, &results.direct) {
        row(
            "4",
            "projects-service / straight from the fake, p50 listing latency",
            ratio(ps.latency.p50_us as f64, direct.latency.p50_us as f64),
            "",
        );
        row(
            "4",
            "projects-service / straight from the fake, throughput",
            ratio(ps.throughput_per_s, direct.throughput_per_s),
            "",
        );
    }

    out.push_str("\n### 5. Peak memory (VmHWM)\n\n| process | peak RSS |\n|---|---:|\n");
    for (name, kib) in &results.memory {
        let _ = writeln!(out, "| {name} | {:.1} MiB |", *kib as f64 / 1024.0);
    }
    if results.memory.is_empty() {
        out.push_str("| not measured | |\n");
    }

    if !results.cpu.is_empty() {
        out.push_str(
            "\n### CPU time per run\n\n\
             Where the two cores went: CPU seconds (user + system) each process used during the \
             run, warm-up included; the client is loadgen itself.\n\n\
             | run | process | CPU time | per successful request |\n|---|---|---:|---:|\n",
        );
        let mut runs: Vec<&str> = Vec::new();
        for (run, _, _) in &results.cpu {
            if !runs.contains(&run.as_str()) {
                runs.push(run);
            }
        }
        for run in runs {
            let named = results.run_named(run);
            let label = named.map_or(run, |(_, label)| label);
            let per_request = |secs: f64| match named {
                Some((r, _)) if r.ok > 0 => {
                    format_micros((secs * 1e6 / r.ok as f64).round() as u64)
                }
                _ => String::new(),
            };
            let mut rows: Vec<(&str, f64)> = results
                .cpu
                .iter()
                .filter(|(r, _, _)| r == run)
                .map(|(_, process, secs)| (process.as_str(), *secs))
                .collect();
            if let Some(client) = named.and_then(|(r, _)| r.client_cpu_s) {
                rows.push(("loadgen (client)", client));
            }
            for (process, secs) in rows {
                let _ = writeln!(
                    out,
                    "| {label} | {process} | {secs:.2} s | {} |",
                    per_request(secs)
                );
            }
        }
    }
    Rendered {
        markdown: out,
        failures,
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✅" } else { "❌ **FAILED**" }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::latency::Summary;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn run(throughput: f64, p50: u64, concurrency: usize) -> RunReport {
        RunReport {
            kind: "get-token".into(),
            targets: vec!["http://127.0.0.1:1".into()],
            concurrency,
            connections_per_target: 1,
            max_requests: 1000,
            max_duration_s: 10.0,
            ok: 1000,
            errors: 0,
            error_kinds: BTreeMap::new(),
            first_error: None,
            elapsed_s: 1.0,
            throughput_per_s: throughput,
            stopped_by: "requests".into(),
            items_per_request: None,
            client_cpu_s: Some(1.5),
            latency: Summary {
                p50_us: p50,
                p99_us: p50 * 3,
                p999_us: p50 * 5,
                max_us: p50 * 10,
                mean_us: p50 as f64,
            },
        }
    }

    fn storm(distinct: usize, errors: u64) -> StormReport {
        StormReport {
            kind: "storm".into(),
            targets: vec!["a".into(), "b".into(), "c".into()],
            callers: 1000,
            connections_per_target: 4,
            ok: 1000 - errors,
            errors,
            error_kinds: BTreeMap::new(),
            first_error: None,
            distinct_tokens: distinct,
            slowest_us: 180_000,
            latency: Summary::default(),
        }
    }

    fn complete() -> Results {
        Results {
            one_replica: Some(run(20_000.0, 2_000, 64)),
            three_replicas: Some(run(18_000.0, 2_500, 64)),
            echo: Some(run(50_000.0, 1_000, 64)),
            echo_nodelay: None,
            redis: Some(RedisBench {
                rps: 120_000.0,
                p50_us: Some(200),
            }),
            storm: Some(storm(1, 0)),
            stats_before: Some(json!({"token_calls": {"authorization_code": 1}})),
            stats_after: Some(
                json!({"token_calls": {"authorization_code": 1, "refresh_token": 1}, "spent_refresh_token_reuses": 0}),
            ),
            projects_service: Some(run(30.0, 120_000, 4)),
            direct: Some(run(60.0, 60_000, 4)),
            memory: vec![("token-service #1".into(), 20_480)],
            cpu: vec![
                ("get-token-1".into(), "token-service replica 1".into(), 3.0),
                ("get-token-1".into(), "redis-server".into(), 1.0),
            ],
        }
    }

    #[test]
    fn a_clean_run_renders_every_row_and_no_failure() {
        let r = render(&complete(), 100);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        let md = &r.markdown;
        assert!(md.contains("| 1 | `GetAccessToken`, no refresh due, 1 replica (64 concurrent) | 1,000 | 0 | 20,000 req/s | 2.00 ms | 6.00 ms | 10.0 ms | 20.0 ms |"), "{md}");
        assert!(
            md.contains("| 2 | token-service (1 replica) / bare gRPC, throughput | 0.40× |"),
            "{md}"
        );
        assert!(
            md.contains("| 2 | token-service (1 replica) / bare gRPC, p50 latency | 2.00× |"),
            "{md}"
        );
        assert!(md.contains("120,000 req/s | 200 µs"), "{md}");
        assert!(
            md.contains(
                "| token-endpoint refresh calls during the storm (`/_fake/stats`) | 1 | 1 ✅ |"
            ),
            "{md}"
        );
        assert!(md.contains("| 180 ms vs 100 ms (1.80×) |"), "{md}");
        assert!(
            md.contains(
                "| 4 | projects-service / straight from the fake, p50 listing latency | 2.00× |"
            ),
            "{md}"
        );
        assert!(md.contains("| token-service #1 | 20.0 MiB |"), "{md}");
        assert!(
            !md.contains("TCP_NODELAY"),
            "the optional row is absent: {md}"
        );
        assert!(
            md.contains("| 1, one replica | token-service replica 1 | 3.00 s | 3.00 ms |"),
            "{md}"
        );
        assert!(
            md.contains("| 1, one replica | loadgen (client) | 1.50 s | 1.50 ms |"),
            "{md}"
        );
    }

    #[test]
    fn the_nodelay_echo_run_adds_a_row_and_a_ratio() {
        let mut results = complete();
        results.echo_nodelay = Some(run(55_000.0, 1_000, 64));
        let md = render(&results, 100).markdown;
        assert!(md.contains("| 2 | the echo server with `TCP_NODELAY` on accepted sockets (64 concurrent) | 1,000 |"), "{md}");
        assert!(
            md.contains("/ with `TCP_NODELAY`, p99 latency | 1.00× |"),
            "{md}"
        );
    }

    #[test]
    fn storm_violations_are_reported_not_hidden() {
        let mut results = complete();
        results.stats_after =
            Some(json!({"token_calls": {"refresh_token": 2}, "spent_refresh_token_reuses": 1}));
        results.storm = Some(storm(2, 3));
        let r = render(&results, 100);
        assert_eq!(r.failures.len(), 4, "{:?}", r.failures);
        assert!(
            r.markdown.contains("| 2 | 1 ❌ **FAILED** |"),
            "{}",
            r.markdown
        );
        assert!(r.failures.iter().any(|f| f.contains("2 refresh calls")));
    }

    #[test]
    fn missing_scenarios_are_failures() {
        let r = render(&Results::default(), 100);
        assert_eq!(r.failures.len(), 9, "{:?}", r.failures);
        assert!(r.markdown.contains("not run"));
    }

    #[test]
    fn redis_benchmark_quiet_output_is_parsed() {
        let out = "GET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                   GET: rps=98000.0 (overall: 98000.0) avg_msec=0.3 (overall: 0.3)\r\
                   GET: 99009.90 requests per second, p50=0.255 msec                    \n\n";
        assert_eq!(
            parse_redis_benchmark(out),
            Some(RedisBench {
                rps: 99_009.9,
                p50_us: Some(255)
            })
        );
        // Before 6.2 there was no p50.
        assert_eq!(
            parse_redis_benchmark("GET: 80000.00 requests per second\n"),
            Some(RedisBench {
                rps: 80_000.0,
                p50_us: None
            })
        );
        assert_eq!(parse_redis_benchmark("Could not connect"), None);
    }

    #[test]
    fn results_round_trip_through_files() {
        let dir = std::env::temp_dir().join(format!("loadgen-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = run(1.0, 1, 1);
        std::fs::write(
            dir.join("get-token-1.json"),
            format!("noise\n{}\n", serde_json::to_string(&one).unwrap()),
        )
        .unwrap();
        std::fs::write(
            dir.join("memory.tsv"),
            "token-service #1\t2048\nredis-server\t4096\n",
        )
        .unwrap();
        std::fs::write(dir.join("cpu.tsv"), "echo\tloadgen echo-server\t1.25\n").unwrap();
        let loaded = Results::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(loaded.one_replica, Some(one));
        assert!(loaded.echo.is_none());
        assert_eq!(loaded.memory[1], ("redis-server".into(), 4096));
        assert_eq!(
            loaded.cpu,
            [("echo".into(), "loadgen echo-server".into(), 1.25)]
        );
    }
}
