//! The audit trail of token hand-outs (docs/design.md, "The audit trail"): repeated hand-outs
//! are counted and written once per `TOKEN_AUDIT_INTERVAL_SECONDS` per kind (caller, RPC,
//! install, outcome), so the sum of the counts is every hand-out; refusals keep a line each;
//! the pending counts are written at shutdown; no line holds a token.

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::Code;

/// The JSON audit lines of a log.
fn audit_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect()
}

fn field<'a>(line: &'a serde_json::Value, k: &str) -> Option<&'a str> {
    line["fields"][k].as_str()
}

/// The hand-out lines of `rpc`, by (caller, install, outcome): each line's count.
fn hand_outs(
    lines: &[serde_json::Value],
    rpc: &str,
) -> BTreeMap<(String, String, String), Vec<u64>> {
    let mut kinds: BTreeMap<_, Vec<u64>> = BTreeMap::new();
    for line in lines.iter().filter(|l| field(l, "rpc") == Some(rpc)) {
        let (Some(caller), Some(outcome)) = (field(line, "caller"), field(line, "outcome")) else {
            continue; // a refusal before the service: no caller, or written by the caller check
        };
        let Some(count) = line["fields"]["count"].as_u64() else {
            continue; // a refused call's line (PermissionDenied/Unauthenticated): no count
        };
        let install = field(line, "install_id").unwrap_or("").to_owned();
        kinds
            .entry((caller.to_owned(), install, outcome.to_owned()))
            .or_default()
            .push(count);
    }
    kinds
}

/// Calls `GetAccessToken` `per_client` times on each client, cycling over `installs`, 8 calls
/// at a time per client; returns every access token handed out.
async fn hand_out_many(
    clients: &[Client],
    installs: &[String],
    per_client: usize,
) -> HashSet<String> {
    let mut tasks = Vec::new();
    for client in clients {
        for lane in 0..8 {
            let (mut client, installs) = (client.clone(), installs.to_vec());
            tasks.push(tokio::spawn(async move {
                let mut tokens = HashSet::new();
                for i in (lane..per_client).step_by(8) {
                    let install = &installs[i % installs.len()];
                    let token = client
                        .get_access_token(by_install(install))
                        .await
                        .expect("a hand-out")
                        .into_inner()
                        .access_token;
                    tokens.insert(token);
                }
                tokens
            }));
        }
    }
    let mut tokens = HashSet::new();
    for t in tasks {
        tokens.extend(t.await.unwrap());
    }
    tokens
}

/// A token-service process logging JSON with `TOKEN_AUDIT_INTERVAL_SECONDS=interval`, its
/// address and `installs` installs made by the ops caller (and that caller).
async fn audited_replica(
    stack: &Stack,
    interval: &str,
    installs: usize,
) -> (process::Process, std::net::SocketAddr, Client, Vec<String>) {
    let (p, addr) = stack
        .replica_process(&[
            ("LOG_FORMAT", "json"),
            ("TOKEN_AUDIT_INTERVAL_SECONDS", interval),
        ])
        .await;
    let mut ops = client_with_key(addr, CALLER_KEY).await;
    let installs = stack.installs(&mut ops, installs).await;
    (p, addr, ops, installs)
}

/// How many hand-outs each (caller, install) gets from [`hand_out_many`].
fn expected_per_install(per_client: usize, installs: usize, i: usize) -> u64 {
    (per_client / installs + usize::from(i < per_client % installs)) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_hand_outs_are_counted_per_interval_and_refusals_keep_their_lines() {
    const PER_CLIENT: usize = 5_000; // two callers: 10,000 hand-outs
    const INTERVAL_SECONDS: u64 = 1;
    let stack = Stack::start(fake_config()).await;
    let (mut p, addr, ops, installs) =
        audited_replica(&stack, &INTERVAL_SECONDS.to_string(), 3).await;
    let projects = client_with_key(addr, PROJECTS_TOKEN_KEY).await;

    let started = Instant::now();
    let tokens = hand_out_many(&[ops.clone(), projects.clone()], &installs, PER_CLIENT).await;
    // Refusals in the middle of the traffic: each keeps a line of its own.
    let mut stranger = client_with_key(addr, "guessed-key-0123456789abcdefghij").await;
    for _ in 0..3 {
        let e = stranger
            .get_access_token(by_install(&installs[0]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = projects
            .clone()
            .delete_install(pb::DeleteInstallRequest {
                install_id: installs[0].clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    let more = hand_out_many(&[ops.clone(), projects.clone()], &installs, 300).await;
    let elapsed = started.elapsed();
    assert!(
        p.terminate(Duration::from_secs(20)),
        "graceful exit\n{}",
        p.log()
    );

    let log = p.log();
    let lines = audit_lines(&log);
    let kinds = hand_outs(&lines, "GetAccessToken");
    assert_eq!(
        kinds.len(),
        6,
        "two callers x three installs, all ok: {kinds:?}"
    );
    let total: u64 = kinds.values().flatten().sum();
    assert_eq!(
        total,
        2 * (PER_CLIENT + 300) as u64,
        "every hand-out is counted once\n{kinds:?}"
    );
    for ((caller, install, outcome), counts) in &kinds {
        assert_eq!(outcome, "ok");
        let i = installs
            .iter()
            .position(|x| x == install)
            .expect("a known install");
        let expected = expected_per_install(PER_CLIENT, 3, i) + expected_per_install(300, 3, i);
        assert_eq!(
            counts.iter().sum::<u64>(),
            expected,
            "{caller} on {install}: {counts:?}"
        );
        // The first at once, then at most one line per interval (plus the one at shutdown).
        assert_eq!(
            counts[0], 1,
            "the first hand-out of a kind is a line of its own"
        );
        let bound = 2 + elapsed.as_secs().div_ceil(INTERVAL_SECONDS) as usize + 1;
        assert!(
            counts.len() <= bound,
            "{caller} on {install}: {} lines in {elapsed:?}, at most {bound}",
            counts.len()
        );
    }
    let refused = |outcome: &str| {
        lines
            .iter()
            .filter(|l| field(l, "outcome") == Some(outcome))
            .count()
    };
    assert_eq!(refused("Unauthenticated"), 3, "one line per unknown key");
    assert_eq!(refused("PermissionDenied"), 3, "one line per refused RPC");
    for token in tokens.iter().chain(&more) {
        assert!(!log.contains(token.as_str()), "a token in the log");
    }
    for key in [CALLER_KEY, PROJECTS_TOKEN_KEY] {
        assert!(!log.contains(key), "a caller key in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_counts_are_written_at_shutdown() {
    let stack = Stack::start(fake_config()).await;
    // No interval passes during the test: only the final flush can write the counts.
    let (mut p, _, ops, installs) = audited_replica(&stack, "3600", 2).await;
    hand_out_many(std::slice::from_ref(&ops), &installs, 400).await;
    let before = hand_outs(&audit_lines(&p.log()), "GetAccessToken");
    let written: u64 = before.values().flatten().sum();
    assert_eq!(
        written, 2,
        "only the first of each kind before shutdown: {before:?}"
    );
    assert!(
        p.terminate(Duration::from_secs(20)),
        "graceful exit\n{}",
        p.log()
    );
    let after = hand_outs(&audit_lines(&p.log()), "GetAccessToken");
    for counts in after.values() {
        assert_eq!(counts, &[1, 199], "{after:?}");
    }
    assert_eq!(after.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_zero_writes_every_hand_out_at_once() {
    let stack = Stack::start(fake_config()).await;
    let (mut p, _, ops, installs) = audited_replica(&stack, "0", 2).await;
    hand_out_many(std::slice::from_ref(&ops), &installs, 200).await;
    // Written at once: all there before shutdown.
    let deadline = Instant::now() + Duration::from_secs(10);
    let kinds = loop {
        let kinds = hand_outs(&audit_lines(&p.log()), "GetAccessToken");
        if kinds.values().map(Vec::len).sum::<usize>() >= 200 || Instant::now() > deadline {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kinds.len(), 2);
    for counts in kinds.values() {
        assert_eq!(counts.len(), 100, "one line per hand-out");
        assert!(counts.iter().all(|&c| c == 1));
    }
    assert!(p.terminate(Duration::from_secs(20)));
}
