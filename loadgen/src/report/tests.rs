#![allow(clippy::unwrap_used)]
use std::collections::BTreeMap;

use super::*;
use crate::drive::RunReport;
use crate::latency::Summary;
use crate::lean::LeanReport;
use crate::storm::StormReport;
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
    assert!(
        md.contains(
            "| 1 | `GetAccessToken`, no refresh due, 1 replica, `RUST_LOG=warn` (8 concurrent) |"
        ),
        "{md}"
    );
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
