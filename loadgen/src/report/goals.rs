//! The goals, against the bare server in the same run, with token-service as users run it (its
//! default log level, the audit trail at its default interval), and the table that judges a run.

use std::fmt::Write as _;

use super::Results;
use super::tables::{mib, plural, ratio};
use crate::latency::{format_micros, format_rate, group_thousands};

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

/// The goals and whether this run met them; returns the missed ones.
pub(super) fn goals_table(out: &mut String, results: &Results) -> Vec<String> {
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
                format!("≥ {:.2}×", THROUGHPUT_64),
                Some(r >= THROUGHPUT_64),
            );
        }
        _ => goal(
            "64 streams: token-service / bare server, throughput",
            "n/a".into(),
            format!("≥ {:.2}×", THROUGHPUT_64),
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
                format!("≤ {:.1}×", P99_8),
                Some(r <= P99_8),
            );
        }
        _ => goal(
            "8 streams: token-service / bare server, p99 latency",
            "n/a".into(),
            format!("≤ {:.1}×", P99_8),
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
                format!("≤ {:.1}×", P50_1),
                Some(r <= P50_1),
            );
        }
        _ => goal(
            "1 stream: token-service / bare server, p50 latency",
            "n/a".into(),
            format!("≤ {:.1}×", P50_1),
            None,
        ),
    }
    let rss_target = format!(
        "≤ {} with {} installs",
        mib(RSS_KIB as f64),
        group_thousands(RSS_INSTALLS)
    );
    match (
        results.installs.get("rss_after_kib"),
        results.installs.get("installs"),
    ) {
        (Some(&kib), Some(&n)) => {
            let enough = n as u64 >= RSS_INSTALLS;
            goal(
                &format!(
                    "token-service `VmRSS` with {} cached installs (each asked for once)",
                    group_thousands(n as u64)
                ),
                mib(kib),
                rss_target,
                // A smaller run says nothing about the goal's size.
                enough.then_some(kib <= RSS_KIB as f64),
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
                format!("≥ {:.2}×", LOADGEN_VS_LEAN),
                Some(r >= LOADGEN_VS_LEAN),
            );
        }
        _ => goal(
            "64 streams, bare server: `loadgen get-token` / lean client, throughput",
            "n/a".into(),
            format!("≥ {:.2}×", LOADGEN_VS_LEAN),
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
