//! The report's tables: throughput and latency, ratios and checks, memory and CPU; the goals'
//! table comes first (`goals`).

use std::fmt::Write as _;

use serde_json::Value;

use super::Results;
use super::goals::goals_table;
use crate::drive::RunReport;
use crate::latency::{format_micros, format_rate, group_thousands};

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

pub(super) fn plural(n: usize) -> &'static str {
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

pub(super) fn ratio(numerator: f64, denominator: f64) -> String {
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

pub(super) fn mib(kib: f64) -> String {
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

fn mark(ok: bool) -> &'static str {
    if ok { "✅" } else { "❌ **FAILED**" }
}
