//! What a `scripts/bench` run left in its results directory, parsed: [`Results`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::tables::plural;
use crate::drive::RunReport;
use crate::lean::LeanReport;
use crate::storm::StormReport;

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

pub(super) fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> anyhow::Result<Option<T>> {
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
pub(super) fn tsv_numbers(dir: &Path, name: &str) -> anyhow::Result<BTreeMap<String, f64>> {
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
    numbered_files(dir, prefix)
}

/// The JSON of the files `{prefix}{N}.json`, by N.
pub(super) fn numbered_files<T: DeserializeOwned>(
    dir: &Path,
    prefix: &str,
) -> anyhow::Result<BTreeMap<usize, T>> {
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
    pub(super) fn run_named(&self, run: &str) -> Option<NamedRun> {
        let by_streams = |prefix: &str, runs: &BTreeMap<usize, RunReport>, what: &str| {
            let streams: usize = run.strip_prefix(prefix)?.parse().ok()?;
            let r = runs.get(&streams)?;
            Some(NamedRun::of(
                r,
                format!("1, {what}, {streams} stream{}", plural(streams)),
            ))
        };
        let streams_runs = [
            ("token-s", &self.token, "one replica"),
            ("bare-s", &self.bare, "bare server"),
            ("token-warn-s", &self.token_warn, "`RUST_LOG=warn`"),
        ];
        if let Some(named) = streams_runs
            .into_iter()
            .find_map(|(prefix, runs, what)| by_streams(prefix, runs, what))
        {
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
pub(super) struct NamedRun {
    pub(super) label: String,
    /// Calls answered while the servers' CPU was measured (warm-up included).
    pub(super) answered: u64,
    /// The client's own CPU time, and the calls it covers.
    pub(super) client_cpu_s: Option<f64>,
    pub(super) client_answered: u64,
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
