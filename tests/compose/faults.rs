//! Faults on real containers: three token-service replicas (exactly the user's `token-service`,
//! twice more) behind projects-service, under a load of listings from the host, with numbers from
//! the fake Snyk's `/_fake/stats` after each fault:
//!
//! 1. a burst of listings over an install whose access token Snyk no longer takes → one refresh;
//! 2. `docker pause` of the replica that has just sent a refresh, past its lease → listings go on
//!    through the others, and after `docker unpause` nobody presented that refresh token twice;
//! 3. `docker kill` of a replica whose refresh is at Snyk → nobody presents its token again;
//! 4. `docker restart` of Redis under load → every grant is still there (AOF volume);
//! 5. token-service cut off from Redis (`docker network disconnect`) for 10 s.
//!
//! After each: every install ACTIVE or NEEDS_REAUTH(`refresh_in_doubt`) (reported), zero
//! spent-token presentations, and no caller error once the fault has ended.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use serde_norway::{Mapping, Value as Yaml};
use snykapps_proto::token_v1 as pb;
use system_tests::{
    Browser, Client, access_token, client_with_key, force, install_over_http, install_status,
};

use crate::harness::{Compose, docker, fake_stats as stats};

const APP: &str = "http://localhost:8080";
/// The demo key auth-service presents to projects-service (docker-compose.yml's default).
const PROJECTS_KEY: &str = "demo-auth-to-projects-key-not-secret";
/// The test's own token-service caller, allowed every RPC, to look at installs.
const FAULT_TEST_KEY: &str = "compose-test-ops-key-0123456789abcdef";
const REPLICAS: [&str; 3] = ["token-service", "token-service-2", "token-service-3"];
/// Short refresh deadlines, so that a frozen or dead sender's lease runs out within the test;
/// and the shortest minimum refresh interval, so that a refresh forced right after an install
/// (held until its token is an interval old: docs/design.md, "No spinning refreshes") reaches
/// Snyk within a second.
const TIGHT: [(&str, &str); 5] = [
    ("TOKEN_REFRESH_LEASE_MS", "6000"),
    ("SNYK_TOKEN_TIMEOUT_MS", "2000"),
    ("SNYK_TOKEN_RETRIES", "0"),
    ("TOKEN_REFRESH_IN_DOUBT_SECONDS", "7"),
    ("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "1"),
];
/// How long the load runs after a fault has ended; it must see no error.
const CALM: Duration = Duration::from_secs(4);

fn yaml_map(pairs: &[(&str, Yaml)]) -> Yaml {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(Yaml::from(*k), v.clone());
    }
    Yaml::Mapping(m)
}

/// The override: token-service-2 and -3 as copies of the resolved `token-service`; every replica
/// with the tight deadlines, the test's own caller (`fault-test`, every RPC; the stack's `ops`
/// caller has fewer) and its gRPC port published on 127.0.0.1;
/// projects-service balancing over the three and published too.
fn three_replicas(resolved: &Yaml) -> Yaml {
    let base = resolved["services"]["token-service"].clone();
    let env = &base["environment"];
    let keys = format!(
        "{},fault-test={FAULT_TEST_KEY}",
        env["TOKEN_SERVICE_CLIENT_KEYS"].as_str().unwrap()
    );
    let rpcs = format!(
        "{},fault-test=*",
        env["TOKEN_SERVICE_CALLER_RPCS"].as_str().unwrap()
    );
    let mut services = Mapping::new();
    for name in REPLICAS {
        let mut service = if name == "token-service" {
            Mapping::new()
        } else {
            let mut copy = base.as_mapping().unwrap().clone();
            copy.remove("build");
            copy.remove("container_name");
            copy
        };
        let mut environment = if name == "token-service" {
            Mapping::new()
        } else {
            env.as_mapping().unwrap().clone()
        };
        environment.insert("TOKEN_SERVICE_CLIENT_KEYS".into(), keys.clone().into());
        environment.insert("TOKEN_SERVICE_CALLER_RPCS".into(), rpcs.clone().into());
        for (k, v) in TIGHT {
            environment.insert(k.into(), v.into());
        }
        service.insert("environment".into(), Yaml::Mapping(environment));
        service.insert(
            "ports".into(),
            Yaml::Sequence(vec!["127.0.0.1::50051".into()]),
        );
        services.insert(name.into(), Yaml::Mapping(service));
    }
    let urls: Vec<String> = REPLICAS
        .iter()
        .map(|r| format!("http://{r}:50051"))
        .collect();
    services.insert(
        "projects-service".into(),
        yaml_map(&[
            (
                "environment",
                yaml_map(&[
                    ("TOKEN_SERVICE_URL", urls.join(",").into()),
                    ("TOKEN_SERVICE_TIMEOUT_MS", "5000".into()),
                ]),
            ),
            ("ports", Yaml::Sequence(vec!["127.0.0.1::8081".into()])),
        ]),
    );
    yaml_map(&[("services", Yaml::Mapping(services))])
}

fn refreshes(stats: &Value) -> u64 {
    stats["token_calls"]["refresh_token"].as_u64().unwrap_or(0)
}

async fn fake(method: reqwest::Method, path: &str, body: Option<Value>) {
    let mut req =
        reqwest::Client::new().request(method, format!("{}{path}", crate::harness::DEMO_FAKE));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A refresh that a replica has sent and the fake Snyk is holding.
struct HeldRefresh {
    install: Install,
    /// The access token the refresh was forced over.
    t0: String,
    /// The fake's stats before the refresh.
    before: Value,
    /// The sender's `ForceRefresh`.
    call: tokio::task::JoinHandle<Result<(), tonic::Status>>,
}

/// One install of the stack: its id and its org.
#[derive(Clone, Debug)]
struct Install {
    id: String,
    org: String,
}

/// The running stack and the test's handles on it.
struct Stack {
    compose: Compose,
    projects: SocketAddr,
    browser: Browser,
    http: reqwest::Client,
    installs: Vec<Install>,
}

impl Stack {
    fn replica_addr(&self, replica: &str) -> SocketAddr {
        self.compose.published(replica, 50051)
    }

    async fn ops(&self, replica: &str) -> Client {
        client_with_key(self.replica_addr(replica), FAULT_TEST_KEY).await
    }

    async fn install(&mut self) -> Install {
        let id = install_over_http(&self.browser, APP).await;
        let got = install_status(&mut self.ops("token-service").await, &id).await;
        let install = Install {
            id,
            org: got.orgs[0].id.clone(),
        };
        self.installs.push(install.clone());
        install
    }

    /// A new install whose refresh `replica` sends (a forced refresh) while the fake Snyk holds
    /// it as `fault` says; returns once `arrived(stats before, stats now)` says Snyk has it.
    async fn refresh_held_at_snyk(
        &mut self,
        replica: &str,
        fault: Value,
        arrived: fn(&Value, &Value) -> bool,
    ) -> HeldRefresh {
        let install = self.install().await;
        let mut sender = self.ops(replica).await;
        let t0 = access_token(&mut sender, &install.id).await;
        let before = stats().await;
        fake(reqwest::Method::POST, "/_fake/faults", Some(fault)).await;
        let req = force(&install.id, &t0);
        let call = tokio::spawn(async move { sender.force_refresh(req).await.map(|_| ()) });
        wait_until(
            "the refresh to reach Snyk",
            Duration::from_secs(5),
            || async { arrived(&before, &stats().await) },
        )
        .await;
        HeldRefresh {
            install,
            t0,
            before,
            call,
        }
    }

    /// One listing of `install`'s org through projects-service: Ok, or why not.
    async fn list(&self, install: &Install) -> Result<(), String> {
        list(&self.http, self.projects, install).await
    }

    /// Every install's state: ACTIVE, or NEEDS_REAUTH(`refresh_in_doubt`) (said on stderr);
    /// returns the ACTIVE ones.
    async fn all_accounted_for(&self, phase: &str) -> Vec<Install> {
        let mut ops = self.ops("token-service").await;
        let mut active = Vec::new();
        for install in &self.installs {
            let got = install_status(&mut ops, &install.id).await;
            match got.status() {
                pb::InstallStatus::Active => active.push(install.clone()),
                pb::InstallStatus::NeedsReauth if got.needs_reauth_reason == "refresh_in_doubt" => {
                    eprintln!(
                        "{phase}: install {} NEEDS_REAUTH(refresh_in_doubt): reported, as designed",
                        install.id
                    );
                }
                _ => panic!("{phase}: install {} is {got:?}", install.id),
            }
        }
        active
    }

    /// After a fault: the load over every ACTIVE install for [`CALM`] sees no error, and Snyk
    /// never saw a spent refresh token.
    async fn calm(&self, phase: &str) {
        let active = self.all_accounted_for(phase).await;
        let load = Load::start(self.http.clone(), self.projects, active.clone(), 4);
        tokio::time::sleep(CALM).await;
        let results = load.stop().await;
        let errors: Vec<&String> = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .collect();
        assert!(
            errors.is_empty(),
            "{phase}: {} of {} listings failed after the fault ended: {:?}",
            errors.len(),
            results.len(),
            &errors[..errors.len().min(5)]
        );
        let s = stats().await;
        assert_eq!(s["spent_refresh_token_reuses"], 0, "{phase}: {s}");
        eprintln!(
            "{phase}: {} installs active, {} listings after the fault, 0 errors; fake: {} refreshes, 0 spent-token reuses",
            active.len(),
            results.len(),
            refreshes(&s)
        );
    }
}

async fn list(
    http: &reqwest::Client,
    projects: SocketAddr,
    install: &Install,
) -> Result<(), String> {
    let url = format!(
        "http://{projects}/v1/installs/{}/orgs/{}/projects",
        install.id, install.org
    );
    match http.get(&url).bearer_auth(PROJECTS_KEY).send().await {
        Ok(res) if res.status() == 200 => Ok(()),
        Ok(res) => Err(format!(
            "{}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        )),
        Err(e) => Err(format!("{e}")),
    }
}

type Outcome = (Instant, Result<(), String>);

/// Listings in a loop from `workers` tasks, round-robin over `installs`, each outcome recorded.
struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(
        http: reqwest::Client,
        projects: SocketAddr,
        installs: Vec<Install>,
        workers: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|w| {
                let (stop, log, http, installs) =
                    (stop.clone(), log.clone(), http.clone(), installs.clone());
                tokio::spawn(async move {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) && !installs.is_empty() {
                        let r = list(&http, projects, &installs[i % installs.len()]).await;
                        log.lock().unwrap().push((Instant::now(), r));
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Load { stop, log, tasks }
    }

    /// Successes since `t`.
    fn ok_since(&self, t: Instant) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, r)| *at > t && r.is_ok())
            .count()
    }

    async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}

#[tokio::test]
#[ignore = "needs a Docker engine and the images; run by scripts/compose-test"]
async fn container_faults_never_present_a_spent_token_and_leave_no_caller_error() {
    let compose = Compose::new(
        &["docker-compose.yml"],
        &[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")],
    )
    .with_override(three_replicas);
    compose.up(&[]).await;
    let projects = compose.published("projects-service", 8081);
    let mut stack = Stack {
        compose,
        projects,
        browser: Browser::new(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        installs: Vec::new(),
    };

    // 1. A burst over an install whose access token Snyk stopped taking: one refresh.
    let first = stack.install().await;
    stack.list(&first).await.expect("a first listing");
    let before = refreshes(&stats().await);
    fake(reqwest::Method::POST, "/_fake/expire-access-tokens", None).await;
    let burst: Vec<_> = (0..40)
        .map(|_| {
            let (http, install) = (stack.http.clone(), first.clone());
            tokio::spawn(async move { list(&http, projects, &install).await })
        })
        .collect();
    for call in burst {
        call.await
            .unwrap()
            .expect("every listing of the burst succeeds");
    }
    let s = stats().await;
    assert_eq!(refreshes(&s) - before, 1, "one refresh for the burst: {s}");
    stack.calm("burst over an expired install").await;

    // 2. Pause the replica that has just sent a refresh (Snyk rotated the pair and holds the
    //    answer), past its lease; listings go on through the other replicas.
    let holder = stack.compose.one("token-service");
    let HeldRefresh {
        install: paused,
        before,
        call,
        ..
    } = stack
        .refresh_held_at_snyk(
            "token-service",
            json!({"token_answer_delay": 1500}),
            |before, now| {
                now["successful_refreshes"] == before["successful_refreshes"].as_u64().unwrap() + 1
            },
        )
        .await;
    docker(&["pause", &holder.id]);
    assert!(
        !call.is_finished(),
        "the sender was paused before Snyk's answer reached it (else this phase tests nothing)"
    );
    let paused_at = Instant::now();
    fake(reqwest::Method::DELETE, "/_fake/faults", None).await;
    let load = Load::start(
        stack.http.clone(),
        projects,
        vec![first.clone(), paused.clone()],
        4,
    );
    tokio::time::sleep(Duration::from_millis(7500)).await;
    let served_while_paused = load.ok_since(paused_at);
    docker(&["unpause", &holder.id]);
    // Snyk's answer waited in the frozen sender's socket: on thaw it is read, not lost, and the
    // late pair lands (docs/design.md, "A sender that was frozen reads the answer that arrived").
    call.await
        .unwrap()
        .expect("the thawed sender reads Snyk's answer and completes its refresh");
    let got = install_status(&mut stack.ops("token-service-2").await, &paused.id).await;
    assert_eq!(
        got.status(),
        pb::InstallStatus::Active,
        "the paused sender's outcome landed: {got:?}"
    );
    let during = load.stop().await;
    assert!(
        served_while_paused > 0,
        "listings went on through the other replicas while one was paused: {} outcomes, 0 successes",
        during.len()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = stats().await;
    assert_eq!(
        refreshes(&s) - refreshes(&before),
        1,
        "the paused sender's token was presented once: {s}"
    );
    eprintln!(
        "pause: {served_while_paused} listings served while the sender was paused for {:.1} s",
        paused_at.elapsed().as_secs_f64()
    );
    stack.calm("docker pause of the refresh sender").await;

    // 3. Kill a replica whose refresh Snyk holds before acting on it.
    let victim = stack.compose.one("token-service-2");
    let HeldRefresh {
        install: killed,
        t0,
        before,
        call,
    } = stack
        .refresh_held_at_snyk(
            "token-service-2",
            json!({"token_latency": 5000}),
            |before, now| refreshes(now) == refreshes(before) + 1,
        )
        .await;
    docker(&["kill", &victim.id]);
    assert!(
        call.await.unwrap().is_err(),
        "the killed replica never answered"
    );
    fake(reqwest::Method::DELETE, "/_fake/faults", None).await;
    // Past the in-doubt time: the install is reported in doubt, never refreshed by another.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut ops = stack.ops("token-service").await;
    let err = ops
        .force_refresh(force(&killed.id, &t0))
        .await
        .expect_err("a refresh in doubt is not retried by another replica");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    docker(&["start", &victim.id]);
    stack
        .compose
        .wait_healthy(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("the killed replica comes back: {e}"));
    let s = stats().await;
    assert_eq!(refreshes(&s) - refreshes(&before), 1, "{s}");
    stack.calm("docker kill of a replica mid-refresh").await;

    // 4. Restart Redis under load: the AOF volume keeps every grant.
    let listed = |stack: &Stack| {
        let addr = stack.replica_addr("token-service-3");
        async move {
            let mut ops = client_with_key(addr, FAULT_TEST_KEY).await;
            let page = ops
                .list_installs(pb::ListInstallsRequest {
                    page_size: 500,
                    page_token: String::new(),
                })
                .await
                .expect("ListInstalls")
                .into_inner();
            let mut all: Vec<(String, i32, String)> = page
                .installs
                .into_iter()
                .map(|i| (i.install_id, i.status, i.needs_reauth_reason))
                .collect();
            all.sort();
            all
        }
    };
    let before_restart = listed(&stack).await;
    assert_eq!(
        before_restart.len(),
        stack.installs.len(),
        "{before_restart:?}"
    );
    let active = stack.all_accounted_for("before the Redis restart").await;
    let load = Load::start(stack.http.clone(), projects, active, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    docker(&["restart", &stack.compose.one("redis").id]);
    stack
        .compose
        .wait_healthy(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("the stack is healthy after the Redis restart: {e}"));
    let back = Instant::now();
    wait_until(
        "listings to resume after the Redis restart",
        Duration::from_secs(30),
        || async { load.ok_since(back) > 0 },
    )
    .await;
    load.stop().await;
    assert_eq!(
        listed(&stack).await,
        before_restart,
        "every grant survives the restart"
    );
    stack.calm("docker restart of Redis under load").await;

    // 5. Cut token-service off from Redis for 10 s under load.
    let active = stack.all_accounted_for("before the network cut").await;
    let load = Load::start(stack.http.clone(), projects, active, 4);
    let cut = stack.compose.one("token-service");
    let grants = stack.compose.network("grants");
    docker(&["network", "disconnect", &grants, &cut.id]);
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let served_while_cut = load.ok_since(cut_at);
    docker(&["network", "connect", &grants, &cut.id]);
    // The fault has ended once the cut replica answers from Redis again.
    let addr = stack.replica_addr("token-service");
    let probe = stack.installs[0].id.clone();
    wait_until(
        "token-service to reach Redis again",
        Duration::from_secs(30),
        || {
            let probe = probe.clone();
            async move {
                let mut ops = client_with_key(addr, FAULT_TEST_KEY).await;
                ops.get_install(pb::GetInstallRequest { install_id: probe })
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    load.stop().await;
    assert!(
        served_while_cut > 0,
        "listings went on through the replicas that still reach Redis"
    );
    stack
        .calm("token-service cut off from Redis for 10 s")
        .await;

    stack.compose.down();
}
