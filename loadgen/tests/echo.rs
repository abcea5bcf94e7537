//! The echo server, served in-process on port 0, answers a tiny `get-token` run and a storm.

use std::time::{Duration, Instant};

use loadgen::args::{Budget, LocalUrl};
use loadgen::client::Bearer;
use loadgen::echo::EchoServer;
use loadgen::{get_token, lean, storm};
use tokio::sync::oneshot;

struct Running {
    url: LocalUrl,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn spawn_echo() -> Running {
    let server = EchoServer::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("binds");
    let url = LocalUrl::parse_target(&format!("http://{}", server.local_addr())).expect("local");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running {
        url,
        stop: Some(stop),
        served,
    }
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.await.expect("joins").expect("served cleanly");
    }
}

#[tokio::test]
async fn a_tiny_get_token_run_against_the_echo_server() {
    let started = Instant::now();
    let echo = spawn_echo().await;

    let report = get_token::run(get_token::Plan {
        targets: vec![echo.url.clone(), echo.url.clone()],
        bearer: Bearer::new("any-key-the-echo-ignores").expect("key"),
        install_ids: vec!["00000000-0000-4000-8000-000000000001".into()],
        min_validity_seconds: 0,
        concurrency: 8,
        connections_per_target: 1,
        budget: Budget::new(400, 1.0).expect("budget"),
        warmup: 40,
    })
    .await
    .expect("runs");

    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.ok, 400, "{report:?}");
    assert_eq!(report.stopped_by, "requests");
    assert_eq!(report.warmup_ok, 40, "{report:?}");
    assert_eq!(report.installs, Some(1));
    assert_eq!(report.targets.len(), 2);
    assert!(report.latency.p50_us > 0 && report.latency.p50_us <= report.latency.p99_us);
    assert!(report.latency.p99_us <= report.latency.max_us);
    assert!(report.throughput_per_s > 0.0);
    // The JSON line a script reads carries the flattened percentiles.
    let line = serde_json::to_value(&report).expect("json");
    assert!(line["p99_us"].as_u64().is_some(), "{line}");

    let storm = storm::run(storm::Plan {
        targets: vec![echo.url.clone()],
        bearer: Bearer::new("any-key-the-echo-ignores").expect("key"),
        install_id: "00000000-0000-4000-8000-000000000001".into(),
        callers: 50,
        timeout: Duration::from_secs(1),
    })
    .await
    .expect("storms");
    assert_eq!((storm.ok, storm.errors, storm.distinct_tokens), (50, 0, 1));
    assert!(storm.slowest_us >= storm.latency.p50_us);

    echo.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dead_target_fails_at_connect_not_mid_run() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let err = get_token::run(get_token::Plan {
        targets: vec![LocalUrl::parse_target(&format!("http://127.0.0.1:{port}")).expect("url")],
        bearer: Bearer::new("k").expect("key"),
        install_ids: vec!["x".into()],
        min_validity_seconds: 0,
        concurrency: 1,
        connections_per_target: 1,
        budget: Budget::new(1, 1.0).expect("budget"),
        warmup: 0,
    })
    .await
    .expect_err("nothing listens");
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
}

#[tokio::test]
async fn the_lean_client_counts_answers_within_its_bounds() {
    let echo = spawn_echo().await;
    let report = lean::run(lean::Plan {
        targets: vec![echo.url.clone()],
        bearer: Bearer::new("any-key-the-echo-ignores").expect("key"),
        install_id: "00000000-0000-4000-8000-000000000001".into(),
        concurrency: 6,
        connections_per_target: 2,
        // 6 tasks share 200 requests: 34, 34, 33, 33, 33, 33.
        budget: Budget::new(200, 5.0).expect("budget"),
        warmup: Duration::from_millis(50),
    })
    .await
    .expect("runs");
    assert_eq!((report.ok, report.errors), (200, 0), "{report:?}");
    assert!(report.warmup_ok > 0, "{report:?}");
    assert!(report.throughput_per_s > 0.0);
    assert!(
        report.elapsed_s < 5.0,
        "the request bound ended it: {report:?}"
    );
    let line = serde_json::to_value(&report).expect("json");
    assert_eq!(line["kind"], "lean-get-token");
    assert!(line["client_cpu_s"].as_f64().is_some(), "{line}");

    // The duration bound ends a run without a request bound.
    let report = lean::run(lean::Plan {
        targets: vec![echo.url.clone()],
        bearer: Bearer::new("k").expect("key"),
        install_id: "x".into(),
        concurrency: 2,
        connections_per_target: 1,
        budget: Budget::new(u64::MAX, 0.2).expect("budget"),
        warmup: Duration::ZERO,
    })
    .await
    .expect("runs");
    assert_eq!((report.warmup_ok, report.errors), (0, 0), "{report:?}");
    assert!(report.ok > 0 && report.elapsed_s >= 0.2, "{report:?}");
    echo.stop().await;
}
