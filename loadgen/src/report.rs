//! `loadgen report`: turns the files a `scripts/bench` run leaves in its results directory into the
//! Markdown tables of `docs/benchmarks.md`, checks the storm's invariants, and compares the run
//! with the goals ([`goals`]). Every number in the tables comes from those files.
//!
//! | file | written by |
//! |---|---|
//! | `token-s1.json`, `token-s8.json`, `token-s64.json` (any `token-sN.json`) | `loadgen get-token` with N streams against one token-service replica |
//! | `bare-s1.json`, … (any `bare-sN.json`) | the same against the bare server (`loadgen echo-server --nodelay`) |
//! | `get-token-3.json` | `loadgen get-token` over three replicas |
//! | `token-warn-s1.json`, … (any `token-warn-sN.json`) | the same against a replica with `RUST_LOG=warn` |
//! | `token-crowded-s8.json`, `bare-crowded-s8.json` | 8 streams against a replica and a bare server whose workers outnumber their cores |
//! | `crowded.tsv` | the script: `workers` (the runtimes' worker threads) and `cores` (the cores they were confined to) |
//! | `lean-bare.json` | `loadgen lean-get-token` against the bare server |
//! | `redis-benchmark.txt` | `redis-benchmark -t get -n 100000 -q` |
//! | `storm.json` | `loadgen storm` |
//! | `storm-stats-before.json`, `storm-stats-after.json` | `loadgen fake-stats` around the storm |
//! | `projects-service.json` | `loadgen http` on projects-service's listing |
//! | `fake-direct.json` | `loadgen page` straight from the fake |
//! | `fill.json` | `loadgen get-token --installs-file`: each of the many installs asked for once |
//! | `installs.tsv` | the script: `key<TAB>number` per line: `installs`, `install_seconds`, `install_concurrency`, `rss_before_kib`, `rss_after_kib` (token-service replica 1's `VmRSS` before the installs and after the fill) |
//! | `memory.tsv` | the script: `process<TAB>VmHWM in kB` per line |
//! | `cpu.tsv` | the script: `run<TAB>process<TAB>CPU seconds` per line, `run` being one of the JSON files' stems (`token-s64`, …) |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::drive::RunReport;
use crate::latency::{format_micros, format_rate, group_thousands};
use crate::lean::LeanReport;
use crate::storm::StormReport;

/// The goals, against the bare server in the same run, with token-service as users run it (its
/// default log level, the audit trail at its default interval).
pub mod goals {
    /// 64 streams: token-service's throughput at least this share of the bare server's.
    pub const THROUGHPUT_64: f64 = 0.90;
    /// 8 streams: token-service's p99 at most this multiple of the bare server's.
    pub const P99_8: f64 = 1.3;
    /// 1 stream: token-service's p50 at most this multiple of the bare server's.
    pub const P50_1: f64 = 1.2;
    /// token-service's resident set with this many installs in its cache…
    pub const RSS_INSTALLS: u64 = 100_000;
    /// …at most this, in KiB (64 MiB).
    pub const RSS_KIB: u64 = 64 * 1024;
    /// 64 streams against the bare server: `get-token`'s throughput at least this share of the
    /// lean client's (loadgen is not the bottleneck).
    pub const LOADGEN_VS_LEAN: f64 = 0.90;
}

/// The parsed results of one bench run; `None` (or empty) where a file is missing.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Scenario 1: one token-service replica, by concurrent streams.
    pub token: BTreeMap<usize, RunReport>,
    /// Scenario 1: the bare server (`TCP_NODELAY`), by concurrent streams.
    pub bare: BTreeMap<usize, RunReport>,
    /// Scenario 1, three replicas.
    pub three_replicas: Option<RunReport>,
    /// Scenario 1: one replica with `RUST_LOG=warn`, by concurrent streams.
    pub token_warn: BTreeMap<usize, RunReport>,
    /// Scenario 1, 8 streams, workers outnumbering cores: token-service and the bare server.
    pub crowded_token: Option<RunReport>,
    pub crowded_bare: Option<RunReport>,
    /// Scenario 1, workers outnumbering cores: `workers` and `cores` (`crowded.tsv`).
    pub crowded: BTreeMap<String, f64>,
    /// Scenario 2, the lean client against the bare server.
    pub lean: Option<LeanReport>,
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
    /// Scenario 6: every install asked for once.
    pub fill: Option<RunReport>,
    /// Scenario 6: the numbers the script recorded (`installs.tsv`).
    pub installs: BTreeMap<String, f64>,
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

/// A file's text, `None` when it does not exist.
fn read_optional(dir: &Path, name: &str) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {name}")),
    }
}

/// The non-empty lines of a tab-separated file, split at their last tab: `(rest, last field)`.
fn tsv_pairs<'a>(name: &str, text: &'a str) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.rsplit_once('\t')
                .map(|(a, b)| (a, b.trim()))
                .with_context(|| format!("{name}: bad line {l:?}"))
        })
        .collect()
}

/// `key<TAB>number` lines of `name`, if the file is there.
fn tsv_numbers(dir: &Path, name: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let Some(text) = read_optional(dir, name)? else {
        return Ok(BTreeMap::new());
    };
    tsv_pairs(name, &text)?
        .into_iter()
        .map(|(key, value)| {
            let value = value
                .parse()
                .with_context(|| format!("{name}: bad number {value:?} for {key}"))?;
            Ok((key.trim().to_owned(), value))
        })
        .collect()
}

/// The `get-token` runs of the files `{prefix}{N}.json`, by N.
fn runs_by_streams(dir: &Path, prefix: &str) -> anyhow::Result<BTreeMap<usize, RunReport>> {
    let mut runs = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(streams) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(run) = read_json(dir, name)? {
            runs.insert(streams, run);
        }
    }
    Ok(runs)
}

impl Results {
    /// Reads whatever the run left in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let redis = read_optional(dir, "redis-benchmark.txt")?
            .map(|text| {
                parse_redis_benchmark(&text)
                    .with_context(|| format!("cannot read redis-benchmark's output: {text:?}"))
            })
            .transpose()?;
        let memory = match read_optional(dir, "memory.tsv")? {
            Some(text) => tsv_pairs("memory.tsv", &text)?
                .into_iter()
                .map(|(name, kib)| {
                    let kib = kib
                        .parse()
                        .with_context(|| format!("memory.tsv: bad number {kib:?} for {name}"))?;
                    Ok((name.to_owned(), kib))
                })
                .collect::<anyhow::Result<_>>()?,
            None => Vec::new(),
        };
        let installs = tsv_numbers(dir, "installs.tsv")?;
        let cpu = match read_optional(dir, "cpu.tsv")? {
            Some(text) => text
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
            None => Vec::new(),
        };
        Ok(Self {
            token: runs_by_streams(dir, "token-s")?,
            bare: runs_by_streams(dir, "bare-s")?,
            three_replicas: read_json(dir, "get-token-3.json")?,
            token_warn: runs_by_streams(dir, "token-warn-s")?,
            crowded_token: read_json(dir, "token-crowded-s8.json")?,
            crowded_bare: read_json(dir, "bare-crowded-s8.json")?,
            crowded: tsv_numbers(dir, "crowded.tsv")?,
            lean: read_json(dir, "lean-bare.json")?,
            redis,
            storm: read_json(dir, "storm.json")?,
            stats_before: read_json(dir, "storm-stats-before.json")?,
            stats_after: read_json(dir, "storm-stats-after.json")?,
            projects_service: read_json(dir, "projects-service.json")?,
            direct: read_json(dir, "fake-direct.json")?,
            fill: read_json(dir, "fill.json")?,
            installs,
            memory,
            cpu,
        })
    }

    /// The load run a `cpu.tsv` run name stands for.
    fn run_named(&self, run: &str) -> Option<NamedRun> {
        let by_streams = |prefix: &str, runs: &BTreeMap<usize, RunReport>, what: &str| {
            let streams: usize = run.strip_prefix(prefix)?.parse().ok()?;
            let r = runs.get(&streams)?;
            Some(NamedRun::of(
                r,
                format!("1, {what}, {streams} stream{}", plural(streams)),
            ))
        };
        if let Some(named) = by_streams("token-s", &self.token, "one replica") {
            return Some(named);
        }
        if let Some(named) = by_streams("bare-s", &self.bare, "bare server") {
            return Some(named);
        }
        if let Some(named) = by_streams("token-warn-s", &self.token_warn, "`RUST_LOG=warn`") {
            return Some(named);
        }
        match run {
            "token-crowded-s8" => self.crowded_token.as_ref().map(|r| {
                NamedRun::of(
                    r,
                    "1, one replica, workers outnumbering cores, 8 streams".into(),
                )
            }),
            "bare-crowded-s8" => self.crowded_bare.as_ref().map(|r| {
                NamedRun::of(
                    r,
                    "1, bare server, workers outnumbering cores, 8 streams".into(),
                )
            }),
            "get-token-3" => self
                .three_replicas
                .as_ref()
                .map(|r| NamedRun::of(r, "1, three replicas, 64 streams".into())),
            "lean-bare" => self.lean.as_ref().map(|l| NamedRun {
                label: "2, lean client, bare server".into(),
                answered: l.ok + l.warmup_ok,
                client_cpu_s: l.client_cpu_s,
                // The lean client measures its CPU over the measured run only.
                client_answered: l.ok,
            }),
            "projects-service" => self
                .projects_service
                .as_ref()
                .map(|r| NamedRun::of(r, "4, through projects-service".into())),
            "fake-direct" => self
                .direct
                .as_ref()
                .map(|r| NamedRun::of(r, "4, straight from the fake".into())),
            "fill" => self
                .fill
                .as_ref()
                .map(|r| NamedRun::of(r, "6, each install once".into())),
            _ => None,
        }
    }

    /// CPU seconds `process` used during `run`, per call answered then (warm-up included), in
    /// microseconds.
    pub fn cpu_per_call_us(&self, run: &str, process: &str) -> Option<f64> {
        let named = self.run_named(run)?;
        let secs = self
            .cpu
            .iter()
            .find(|(r, p, _)| r == run && p == process)?
            .2;
        (named.answered > 0).then(|| secs * 1e6 / named.answered as f64)
    }
}

/// A load run as the CPU table shows it.
struct NamedRun {
    label: String,
    /// Calls answered while the servers' CPU was measured (warm-up included).
    answered: u64,
    /// The client's own CPU time, and the calls it covers.
    client_cpu_s: Option<f64>,
    client_answered: u64,
}

impl NamedRun {
    fn of(r: &RunReport, label: String) -> Self {
        let answered = r.ok + r.warmup_ok;
        Self {
            label,
            answered,
            // `get-token`'s CPU time covers the whole command, warm-up included.
            client_cpu_s: r.client_cpu_s,
            client_answered: answered,
        }
    }
}

/// "workers outnumbering cores (2 workers on 1 core)", as far as `crowded.tsv` tells.
fn crowded_label(results: &Results) -> String {
    match (results.crowded.get("workers"), results.crowded.get("cores")) {
        (Some(&w), Some(&c)) => format!(
            "workers outnumbering cores ({w} worker{} on {c} core{})",
            plural(w as usize),
            plural(c as usize)
        ),
        _ => "workers outnumbering cores".into(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The rendered tables and the checks that failed (empty when every invariant held).
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Markdown.
    pub markdown: String,
    /// One line per failed check or missing scenario.
    pub failures: Vec<String>,
    /// One line per goal the run missed (not a failure of the run).
    pub goals_missed: Vec<String>,
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

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
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
    missing("scenario 1, one replica", !results.token.is_empty());
    missing("scenario 1, bare server", !results.bare.is_empty());
    missing(
        "scenario 1, one replica with RUST_LOG=warn",
        !results.token_warn.is_empty(),
    );
    missing(
        "scenario 1, three replicas",
        results.three_replicas.is_some(),
    );
    missing("scenario 2, lean client", results.lean.is_some());
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
    missing(
        "scenario 6, installs",
        results.fill.is_some() && results.installs.contains_key("rss_after_kib"),
    );

    let goals_missed = goals_table(&mut out, results);

    out.push_str("\n### Throughput and latency\n\n");
    out.push_str(
        "| # | scenario | ok | errors | throughput | p50 | p99 | p99.9 | max |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut streams: Vec<usize> = results
        .token
        .keys()
        .chain(results.bare.keys())
        .copied()
        .collect();
    streams.sort_unstable();
    streams.dedup();
    for n in streams {
        run_row(
            &mut out,
            "1",
            "`GetAccessToken`, no refresh due, 1 replica",
            results.token.get(&n),
            "req",
        );
        run_row(
            &mut out,
            "1",
            "bare tonic server (`TCP_NODELAY`), same proto",
            results.bare.get(&n),
            "req",
        );
        if let Some(warn) = results.token_warn.get(&n) {
            run_row(
                &mut out,
                "1",
                "`GetAccessToken`, no refresh due, 1 replica, `RUST_LOG=warn`",
                Some(warn),
                "req",
            );
        }
    }
    let crowded = crowded_label(results);
    if let Some(token) = &results.crowded_token {
        let label = format!("`GetAccessToken`, 1 replica, {crowded}");
        run_row(&mut out, "1", &label, Some(token), "req");
    }
    if let Some(bare) = &results.crowded_bare {
        let label = format!("bare tonic server, {crowded}");
        run_row(&mut out, "1", &label, Some(bare), "req");
    }
    run_row(
        &mut out,
        "1",
        "`GetAccessToken`, no refresh due, 3 replicas",
        results.three_replicas.as_ref(),
        "req",
    );
    match &results.lean {
        Some(l) => {
            let _ = writeln!(
                out,
                "| 2 | lean tonic client (`loadgen lean-get-token`: no latency recorded), bare server ({} concurrent) | {} | {} | {} req/s | | | | |",
                l.concurrency,
                group_thousands(l.ok),
                group_thousands(l.errors),
                format_rate(l.throughput_per_s),
            );
        }
        None => out.push_str("| 2 | lean tonic client, bare server | not run | | | | | | |\n"),
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
    let fill_label = match results.fill.as_ref().and_then(|f| f.installs) {
        Some(n) => format!(
            "`GetAccessToken` for each of {} installs once (each install's first)",
            group_thousands(n as u64)
        ),
        None => "`GetAccessToken` for each install once".into(),
    };
    run_row(&mut out, "6", &fill_label, results.fill.as_ref(), "req");

    out.push_str(
        "\n### Ratios and checks\n\n| # | measure | value | expected |\n|---|---|---:|---|\n",
    );
    let mut row = |n: &str, measure: &str, value: String, expected: &str| {
        let _ = writeln!(out, "| {n} | {measure} | {value} | {expected} |");
    };
    for (streams, ts) in &results.token {
        let Some(bare) = results.bare.get(streams) else {
            continue;
        };
        let s = format!("{streams} stream{}", plural(*streams));
        row(
            "1",
            &format!("token-service / bare server, throughput, {s}"),
            ratio(ts.throughput_per_s, bare.throughput_per_s),
            "",
        );
        row(
            "1",
            &format!("token-service / bare server, p50 latency, {s}"),
            ratio(ts.latency.p50_us as f64, bare.latency.p50_us as f64),
            "",
        );
        row(
            "1",
            &format!("token-service / bare server, p99 latency, {s}"),
            ratio(ts.latency.p99_us as f64, bare.latency.p99_us as f64),
            "",
        );
    }
    for (streams, warn) in &results.token_warn {
        let Some(bare) = results.bare.get(streams) else {
            continue;
        };
        let s = format!("{streams} stream{}", plural(*streams));
        row(
            "1",
            &format!("token-service with `RUST_LOG=warn` / bare server, throughput, {s}"),
            ratio(warn.throughput_per_s, bare.throughput_per_s),
            "",
        );
        row(
            "1",
            &format!("token-service with `RUST_LOG=warn` / bare server, p99 latency, {s}"),
            ratio(warn.latency.p99_us as f64, bare.latency.p99_us as f64),
            "",
        );
    }
    if let (Some(token), Some(bare)) = (&results.crowded_token, &results.crowded_bare) {
        row(
            "1",
            &format!("token-service / bare server, p99 latency, 8 streams, {crowded}"),
            ratio(token.latency.p99_us as f64, bare.latency.p99_us as f64),
            "",
        );
    }
    if let (Some(one), Some(three)) = (results.token.get(&64), &results.three_replicas) {
        row(
            "1",
            "3 replicas / 1 replica, throughput, 64 streams (same cores)",
            ratio(three.throughput_per_s, one.throughput_per_s),
            "",
        );
    }
    if let (Some(ts), Some(redis)) = (results.token.get(&64), &results.redis) {
        row(
            "2",
            "token-service (1 replica, 64 streams) / `redis-benchmark` GET, throughput",
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
    if let Some(&n) = results.installs.get("installs") {
        if let Some(&secs) = results.installs.get("install_seconds") {
            let concurrency = results
                .installs
                .get("install_concurrency")
                .map(|c| format!(", {c} at once"))
                .unwrap_or_default();
            row(
                "6",
                &format!(
                    "time to make {} installs (consent page, Approve, `CompleteInstall`{concurrency})",
                    group_thousands(n as u64)
                ),
                format!(
                    "{secs:.1} s ({} installs/s)",
                    format_rate(if secs > 0.0 { n / secs } else { 0.0 })
                ),
                "",
            );
        }
        if let (Some(&before), Some(&after)) = (
            results.installs.get("rss_before_kib"),
            results.installs.get("rss_after_kib"),
        ) {
            row(
                "6",
                &format!(
                    "token-service `VmRSS` before the installs → after asking for each of {} once",
                    group_thousands(n as u64)
                ),
                format!(
                    "{} → {} (+{:.0} bytes per install)",
                    mib(before),
                    mib(after),
                    if n > 0.0 {
                        (after - before) * 1024.0 / n
                    } else {
                        0.0
                    }
                ),
                "",
            );
        }
    }

    out.push_str("\n### 5. Peak memory (VmHWM)\n\n| process | peak RSS |\n|---|---:|\n");
    for (name, kib) in &results.memory {
        let _ = writeln!(out, "| {name} | {} |", mib(*kib as f64));
    }
    if results.memory.is_empty() {
        out.push_str("| not measured | |\n");
    }

    if !results.cpu.is_empty() {
        out.push_str(
            "\n### CPU time per run\n\n\
             Where the cores went: CPU seconds (user + system) each process used during the run, \
             warm-up included, and per call answered in that time (warm-up included); the client \
             is loadgen itself (`lean-get-token` counts its measured run only).\n\n\
             | run | process | CPU time | per call |\n|---|---|---:|---:|\n",
        );
        let mut runs: Vec<&str> = Vec::new();
        for (run, _, _) in &results.cpu {
            if !runs.contains(&run.as_str()) {
                runs.push(run);
            }
        }
        for run in runs {
            let named = results.run_named(run);
            let label = named.as_ref().map_or(run, |n| n.label.as_str());
            let per_call = |secs: f64, calls: u64| {
                if calls > 0 {
                    format_micros((secs * 1e6 / calls as f64).round() as u64)
                } else {
                    String::new()
                }
            };
            let answered = named.as_ref().map_or(0, |n| n.answered);
            for (_, process, secs) in results.cpu.iter().filter(|(r, _, _)| r == run) {
                let _ = writeln!(
                    out,
                    "| {label} | {process} | {secs:.2} s | {} |",
                    per_call(*secs, answered)
                );
            }
            if let Some(n) = &named
                && let Some(client) = n.client_cpu_s
            {
                let _ = writeln!(
                    out,
                    "| {label} | loadgen (client) | {client:.2} s | {} |",
                    per_call(client, n.client_answered)
                );
            }
        }
    }
    Rendered {
        markdown: out,
        failures,
        goals_missed,
    }
}

/// The goals and whether this run met them; returns the missed ones.
fn goals_table(out: &mut String, results: &Results) -> Vec<String> {
    let mut missed = Vec::new();
    out.push_str(
        "### Goals\n\n\
         Ratios against the bare server in the same run, on the same cores; token-service at its \
         default log level (the audit trail at its default interval), as users run it.\n\n\
         | goal | measured | target | |\n|---|---:|---:|---|\n",
    );
    let mut goal = |what: &str, measured: String, target: String, met: Option<bool>| {
        let verdict = match met {
            Some(true) => "✅ met",
            Some(false) => {
                missed.push(format!("{what}: {measured}, target {target}"));
                "❌ missed"
            }
            None => "not measured",
        };
        let _ = writeln!(out, "| {what} | {measured} | {target} | {verdict} |");
    };
    let pair = |n: usize| results.token.get(&n).zip(results.bare.get(&n));

    match pair(64) {
        Some((ts, bare)) if bare.throughput_per_s > 0.0 => {
            let r = ts.throughput_per_s / bare.throughput_per_s;
            goal(
                "64 streams: token-service / bare server, throughput",
                format!(
                    "{r:.2}× ({} / {} req/s)",
                    format_rate(ts.throughput_per_s),
                    format_rate(bare.throughput_per_s)
                ),
                format!("≥ {:.2}×", goals::THROUGHPUT_64),
                Some(r >= goals::THROUGHPUT_64),
            );
        }
        _ => goal(
            "64 streams: token-service / bare server, throughput",
            "n/a".into(),
            format!("≥ {:.2}×", goals::THROUGHPUT_64),
            None,
        ),
    }
    match pair(8) {
        Some((ts, bare)) if bare.latency.p99_us > 0 => {
            let r = ts.latency.p99_us as f64 / bare.latency.p99_us as f64;
            goal(
                "8 streams: token-service / bare server, p99 latency",
                format!(
                    "{r:.2}× ({} / {})",
                    format_micros(ts.latency.p99_us),
                    format_micros(bare.latency.p99_us)
                ),
                format!("≤ {:.1}×", goals::P99_8),
                Some(r <= goals::P99_8),
            );
        }
        _ => goal(
            "8 streams: token-service / bare server, p99 latency",
            "n/a".into(),
            format!("≤ {:.1}×", goals::P99_8),
            None,
        ),
    }
    match pair(1) {
        Some((ts, bare)) if bare.latency.p50_us > 0 => {
            let r = ts.latency.p50_us as f64 / bare.latency.p50_us as f64;
            goal(
                "1 stream: token-service / bare server, p50 latency",
                format!(
                    "{r:.2}× ({} / {})",
                    format_micros(ts.latency.p50_us),
                    format_micros(bare.latency.p50_us)
                ),
                format!("≤ {:.1}×", goals::P50_1),
                Some(r <= goals::P50_1),
            );
        }
        _ => goal(
            "1 stream: token-service / bare server, p50 latency",
            "n/a".into(),
            format!("≤ {:.1}×", goals::P50_1),
            None,
        ),
    }
    let rss_target = format!(
        "≤ {} with {} installs",
        mib(goals::RSS_KIB as f64),
        group_thousands(goals::RSS_INSTALLS)
    );
    match (
        results.installs.get("rss_after_kib"),
        results.installs.get("installs"),
    ) {
        (Some(&kib), Some(&n)) => {
            let enough = n as u64 >= goals::RSS_INSTALLS;
            goal(
                &format!(
                    "token-service `VmRSS` with {} cached installs (each asked for once)",
                    group_thousands(n as u64)
                ),
                mib(kib),
                rss_target,
                // A smaller run says nothing about the goal's size.
                enough.then_some(kib <= goals::RSS_KIB as f64),
            );
        }
        _ => goal(
            "token-service `VmRSS` with cached installs",
            "n/a".into(),
            rss_target,
            None,
        ),
    }
    match (results.bare.get(&64), &results.lean) {
        (Some(loadgen), Some(lean)) if lean.throughput_per_s > 0.0 => {
            let r = loadgen.throughput_per_s / lean.throughput_per_s;
            goal(
                "64 streams, bare server: `loadgen get-token` / lean client, throughput (loadgen is not the bottleneck)",
                format!(
                    "{r:.2}× ({} / {} req/s)",
                    format_rate(loadgen.throughput_per_s),
                    format_rate(lean.throughput_per_s)
                ),
                format!("≥ {:.2}×", goals::LOADGEN_VS_LEAN),
                Some(r >= goals::LOADGEN_VS_LEAN),
            );
        }
        _ => goal(
            "64 streams, bare server: `loadgen get-token` / lean client, throughput",
            "n/a".into(),
            format!("≥ {:.2}×", goals::LOADGEN_VS_LEAN),
            None,
        ),
    }
    // Per-call CPU of the servers (not goals: what the throughput ratios come from).
    for streams in [64, 8, 1] {
        let token = results.cpu_per_call_us(&format!("token-s{streams}"), "token-service");
        let bare = results.cpu_per_call_us(&format!("bare-s{streams}"), "bare server");
        if token.is_none() && bare.is_none() {
            continue;
        }
        let us = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1} µs"));
        let _ = writeln!(
            out,
            "| {streams} stream{}: server CPU per call, token-service / bare server | {} / {} ({}) | | |",
            plural(streams),
            us(token),
            us(bare),
            match (token, bare) {
                (Some(t), Some(b)) => ratio(t, b),
                _ => "n/a".into(),
            }
        );
    }
    missed
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
            warmup_ok: 0,
            installs: None,
            latency: Summary {
                p50_us: p50,
                p99_us: p50 * 3,
                p999_us: p50 * 5,
                max_us: p50 * 10,
                mean_us: p50 as f64,
            },
        }
    }

    fn lean(throughput: f64) -> LeanReport {
        LeanReport {
            kind: "lean-get-token".into(),
            targets: vec!["http://127.0.0.1:2".into()],
            concurrency: 64,
            connections_per_target: 2,
            max_requests: u64::MAX,
            max_duration_s: 10.0,
            warmup_s: 1.0,
            warmup_ok: 500,
            ok: 2000,
            errors: 0,
            elapsed_s: 1.0,
            throughput_per_s: throughput,
            client_cpu_s: Some(0.5),
            client_cpu_per_call_us: Some(250.0),
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
        let mut fill = run(5_000.0, 3_000, 64);
        fill.installs = Some(100_000);
        fill.ok = 100_000;
        let mut token_64 = run(40_000.0, 1_500, 64);
        token_64.warmup_ok = 1000;
        Results {
            token: BTreeMap::from([
                (1, run(4_000.0, 240, 1)),
                (8, run(20_000.0, 300, 8)),
                (64, token_64),
            ]),
            bare: BTreeMap::from([
                (1, run(8_000.0, 120, 1)),
                (8, run(40_000.0, 200, 8)),
                (64, run(50_000.0, 1_000, 64)),
            ]),
            three_replicas: Some(run(36_000.0, 2_500, 64)),
            token_warn: BTreeMap::from([(8, run(30_000.0, 250, 8))]),
            crowded_token: Some(run(15_000.0, 400, 8)),
            crowded_bare: Some(run(30_000.0, 300, 8)),
            crowded: BTreeMap::from([("workers".into(), 2.0), ("cores".into(), 1.0)]),
            lean: Some(lean(52_000.0)),
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
            fill: Some(fill),
            installs: BTreeMap::from([
                ("installs".into(), 100_000.0),
                ("install_seconds".into(), 80.0),
                ("install_concurrency".into(), 32.0),
                ("rss_before_kib".into(), 16_384.0),
                ("rss_after_kib".into(), 40_960.0),
            ]),
            memory: vec![("token-service #1".into(), 20_480)],
            cpu: vec![
                ("token-s64".into(), "token-service".into(), 2.002),
                ("token-s64".into(), "redis-server".into(), 1.0),
                ("bare-s64".into(), "bare server".into(), 1.0),
                ("lean-bare".into(), "bare server".into(), 1.25),
            ],
        }
    }

    #[test]
    fn a_clean_run_renders_every_row_and_no_failure() {
        let r = render(&complete(), 100);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        let md = &r.markdown;
        assert!(md.contains("| 1 | `GetAccessToken`, no refresh due, 1 replica (64 concurrent) | 1,000 | 0 | 40,000 req/s | 1.50 ms | 4.50 ms | 7.50 ms | 15.0 ms |"), "{md}");
        assert!(
            md.contains("| 1 | bare tonic server (`TCP_NODELAY`), same proto (1 concurrent) |"),
            "{md}"
        );
        assert!(
            md.contains("| 1 | token-service / bare server, throughput, 64 streams | 0.80× |"),
            "{md}"
        );
        assert!(
            md.contains("| 1 | token-service / bare server, p50 latency, 1 stream | 2.00× |"),
            "{md}"
        );
        assert!(md.contains("| 2 | lean tonic client (`loadgen lean-get-token`: no latency recorded), bare server (64 concurrent) | 2,000 | 0 | 52,000 req/s |"), "{md}");
        assert!(md.contains("120,000 req/s | 200 µs"), "{md}");
        assert!(md.contains("| 1 | `GetAccessToken`, no refresh due, 1 replica, `RUST_LOG=warn` (8 concurrent) |"), "{md}");
        assert!(md.contains("| 1 | token-service with `RUST_LOG=warn` / bare server, p99 latency, 8 streams | 1.25× |"), "{md}");
        assert!(md.contains("| 1 | token-service / bare server, p99 latency, 8 streams, workers outnumbering cores (2 workers on 1 core) | 1.33× |"), "{md}");
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
        assert!(md.contains("| 6 | `GetAccessToken` for each of 100,000 installs once (each install's first) (64 concurrent) | 100,000 |"), "{md}");
        assert!(md.contains("| 6 | time to make 100,000 installs (consent page, Approve, `CompleteInstall`, 32 at once) | 80.0 s (1,250 installs/s) |"), "{md}");
        assert!(
            md.contains("| 16.0 MiB → 40.0 MiB (+252 bytes per install) |"),
            "{md}"
        );
        assert!(md.contains("| token-service #1 | 20.0 MiB |"), "{md}");
        // Per call: CPU over the calls answered, warm-up included (1,000 + 1,000).
        assert!(
            md.contains("| 1, one replica, 64 streams | token-service | 2.00 s | 1.00 ms |"),
            "{md}"
        );
        assert!(
            md.contains("| 1, one replica, 64 streams | loadgen (client) | 1.50 s | 750 µs |"),
            "{md}"
        );
        // The lean client's own CPU covers its measured calls only; the server's all of them.
        assert!(
            md.contains("| 2, lean client, bare server | bare server | 1.25 s | 500 µs |"),
            "{md}"
        );
        assert!(
            md.contains("| 2, lean client, bare server | loadgen (client) | 0.50 s | 250 µs |"),
            "{md}"
        );
    }

    #[test]
    fn goals_are_checked_against_the_bare_server() {
        let r = render(&complete(), 100);
        let md = &r.markdown;
        assert!(md.contains("| 64 streams: token-service / bare server, throughput | 0.80× (40,000 / 50,000 req/s) | ≥ 0.90× | ❌ missed |"), "{md}");
        assert!(md.contains("| 8 streams: token-service / bare server, p99 latency | 1.50× (900 µs / 600 µs) | ≤ 1.3× | ❌ missed |"), "{md}");
        assert!(md.contains("| 1 stream: token-service / bare server, p50 latency | 2.00× (240 µs / 120 µs) | ≤ 1.2× | ❌ missed |"), "{md}");
        assert!(md.contains("| token-service `VmRSS` with 100,000 cached installs (each asked for once) | 40.0 MiB | ≤ 64.0 MiB with 100,000 installs | ✅ met |"), "{md}");
        assert!(md.contains("| 64 streams, bare server: `loadgen get-token` / lean client, throughput (loadgen is not the bottleneck) | 0.96× (50,000 / 52,000 req/s) | ≥ 0.90× | ✅ met |"), "{md}");
        assert!(md.contains("| 64 streams: server CPU per call, token-service / bare server | 1001.0 µs / 1000.0 µs (1.00×) | | |"), "{md}");
        // A missed goal is reported, but is not a failure of the run.
        assert_eq!(r.goals_missed.len(), 3, "{:?}", r.goals_missed);
        assert!(
            r.goals_missed[2].starts_with("1 stream"),
            "{:?}",
            r.goals_missed
        );
        // Met when within the ratio: 64 streams at 0.90×, p99 at 8 at 1.3×.
        let mut close = complete();
        close.token.insert(64, run(45_000.0, 1_500, 64));
        close.token.insert(8, run(20_000.0, 260, 8));
        let md = render(&close, 100).markdown;
        assert!(md.contains("| 64 streams: token-service / bare server, throughput | 0.90× (45,000 / 50,000 req/s) | ≥ 0.90× | ✅ met |"), "{md}");
        assert!(md.contains("| 8 streams: token-service / bare server, p99 latency | 1.30× (780 µs / 600 µs) | ≤ 1.3× | ✅ met |"), "{md}");
        assert!(r.failures.is_empty());

        // With fewer installs than the goal names, the RSS is stated but not judged.
        let mut small = complete();
        small.installs.insert("installs".into(), 2_000.0);
        let md = render(&small, 100).markdown;
        assert!(md.contains("| token-service `VmRSS` with 2,000 cached installs (each asked for once) | 40.0 MiB | ≤ 64.0 MiB with 100,000 installs | not measured |"), "{md}");
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
        assert_eq!(r.failures.len(), 12, "{:?}", r.failures);
        assert!(r.markdown.contains("not run"));
        assert!(r.markdown.contains("| n/a | ≥ 0.90× | not measured |"));
        assert!(r.goals_missed.is_empty());
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
            dir.join("token-s1.json"),
            format!("noise\n{}\n", serde_json::to_string(&one).unwrap()),
        )
        .unwrap();
        std::fs::write(
            dir.join("bare-s64.json"),
            serde_json::to_string(&run(2.0, 1, 64)).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("lean-bare.json"),
            serde_json::to_string(&lean(3.0)).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("memory.tsv"),
            "token-service #1\t2048\nredis-server\t4096\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("installs.tsv"),
            "installs\t2000\ninstall_seconds\t3.25\n",
        )
        .unwrap();
        std::fs::write(dir.join("cpu.tsv"), "bare-s64\tbare server\t1.25\n").unwrap();
        let loaded = Results::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(loaded.token.get(&1), Some(&one));
        assert_eq!(loaded.token.len(), 1);
        assert_eq!(loaded.bare.keys().copied().collect::<Vec<_>>(), [64]);
        assert_eq!(loaded.lean, Some(lean(3.0)));
        assert!(loaded.three_replicas.is_none());
        assert_eq!(loaded.memory[1], ("redis-server".into(), 4096));
        assert_eq!(loaded.installs.get("install_seconds"), Some(&3.25));
        assert_eq!(
            loaded.cpu,
            [("bare-s64".into(), "bare server".into(), 1.25)]
        );
        assert_eq!(
            loaded.cpu_per_call_us("bare-s64", "bare server"),
            Some(1_250.0)
        );
    }
}
