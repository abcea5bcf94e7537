//! Every secret rotates without downtime: the Snyk client secret (two active at Snyk, two in
//! `SNYK_CLIENT_SECRET`) and a caller's key (two per caller), each rolled over three
//! token-service replicas restarted one by one under a storm of calls; and a client secret Snyk
//! no longer accepts is the app's configuration, never the user's grant.

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    net::SocketAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use fake_snyk::SecretChange;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tokio::task::JoinHandle;
use tonic::Code;

/// The replicas callers may reach right now, and the key they present. A replica leaves the
/// list before it is stopped, as a load balancer drains it before a rolling restart stops it.
#[derive(Default)]
struct Pool {
    addrs: RwLock<Vec<SocketAddr>>,
    key: RwLock<String>,
}

impl Pool {
    fn new(replicas: &[Replica], key: &str) -> Arc<Pool> {
        Arc::new(Pool {
            addrs: RwLock::new(replicas.iter().map(|r| r.addr).collect()),
            key: RwLock::new(key.to_owned()),
        })
    }

    fn pick(&self, i: usize) -> (SocketAddr, String) {
        let addrs = self.addrs.read().unwrap();
        (addrs[i % addrs.len()], self.key.read().unwrap().clone())
    }

    fn switch_key(&self, key: &str) {
        *self.key.write().unwrap() = key.to_owned();
    }
}

/// Restarts each replica in turn with `overrides`: the new one joins the pool, the old one
/// leaves it, is given a moment to finish the calls it was handed, and stops gracefully.
async fn roll(stack: &Stack, replicas: &mut [Replica], pool: &Pool, overrides: &[(&str, &str)]) {
    for slot in replicas.iter_mut() {
        let fresh = stack.replica(overrides).await;
        let old_addr = slot.addr;
        {
            let mut addrs = pool.addrs.write().unwrap();
            addrs.push(fresh.addr);
            addrs.retain(|a| *a != old_addr);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::mem::replace(slot, fresh).stop().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Calls and failures of a storm, failures by gRPC code with a sample message.
#[derive(Default)]
struct Tally {
    calls: u64,
    failed: BTreeMap<String, (u64, String)>,
}

/// A storm of `GetAccessToken` (and every seventh call a `ForceRefresh` of the token just
/// received, when `forcing`) over the pool, until `stop`.
fn storm(
    pool: &Arc<Pool>,
    installs: &[String],
    workers: usize,
    forcing: bool,
    stop: &Arc<AtomicBool>,
) -> (Arc<Mutex<Tally>>, Vec<JoinHandle<()>>) {
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let handles = (0..workers)
        .map(|w| {
            let (pool, tally, stop, installs) =
                (pool.clone(), tally.clone(), stop.clone(), installs.to_vec());
            tokio::spawn(async move {
                let mut clients: HashMap<(SocketAddr, String), Client> = HashMap::new();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (addr, key) = pool.pick(i);
                    let c = match clients.entry((addr, key)) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            let c = client_with_key(addr, &e.key().1).await;
                            e.insert(c)
                        }
                    };
                    let id = &installs[i % installs.len()];
                    let outcome = match c.get_access_token(by_install(id)).await {
                        Ok(t) if forcing && i % 7 == 0 => c
                            .force_refresh(force(id, &t.into_inner().access_token))
                            .await
                            .map(|_| ()),
                        Ok(_) => Ok(()),
                        Err(e) => Err(e),
                    };
                    {
                        let mut t = tally.lock().unwrap();
                        t.calls += 1;
                        if let Err(e) = outcome {
                            let entry = t
                                .failed
                                .entry(format!("{:?}", e.code()))
                                .or_insert((0, e.message().to_owned()));
                            entry.0 += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    (tally, handles)
}

async fn end(stop: &AtomicBool, handles: Vec<JoinHandle<()>>, tally: &Mutex<Tally>) -> Tally {
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.unwrap();
    }
    std::mem::take(&mut *tally.lock().unwrap())
}

/// The Snyk client secret moves from A to B under load, as docs/operations.md's "Rotating
/// secrets" says: B is created at Snyk, the replicas are restarted one by one with `B,A`, A is
/// deleted at Snyk. Then one more replica starts with the stale order `A,B`: Snyk refuses A, it
/// tries B, and keeps B first. No call fails, no refresh token is presented twice, no install
/// leaves ACTIVE.
#[tokio::test]
async fn the_client_secret_rotates_under_load_over_three_replicas() {
    // 2-second access tokens: every install refreshes about once a second throughout.
    let stack = Stack::start(fake_config()).await;
    let mut replicas = stack.replicas(3, &[]).await;
    let mut c = client(&replicas[0]).await;
    let installs = stack.installs(&mut c, 4).await;
    let pool = Pool::new(&replicas, CALLER_KEY);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (tally, handles) = storm(&pool, &installs, 9, true, &stop);

    tokio::time::sleep(Duration::from_millis(800)).await;
    let b = stack
        .fake
        .change_client_secret(SecretChange::Create)
        .unwrap()
        .expect("a new secret");
    let b_then_a = format!("{b},{CLIENT_SECRET}");
    roll(
        &stack,
        &mut replicas,
        &pool,
        &[("SNYK_CLIENT_SECRET", &b_then_a)],
    )
    .await;
    stack
        .fake
        .change_client_secret(SecretChange::Delete {
            secret: CLIENT_SECRET.into(),
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refused_before = stack.fake.stats().client_authentication_failures;

    // An operator's slip: a replica started with the old order. It costs one refused call (or
    // a few, from calls that raced to be first), never a failed one.
    let a_then_b = format!("{CLIENT_SECRET},{b}");
    // Each install is refreshed about once a second (a forced refresh of a token that new waits
    // for its margin: docs/design.md, "No spinning refreshes"), by whichever replica's caller
    // finds it due first: the storm goes on until the stale replica has made one, and a moment
    // more with B first.
    let stale = stack.replica(&[("SNYK_CLIENT_SECRET", &a_then_b)]).await;
    pool.addrs.write().unwrap().push(stale.addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stale.metrics.snapshot().client_secret_rejected[0] == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = end(&stop, handles, &tally).await;
    let elapsed = started.elapsed();

    assert!(
        tally.failed.is_empty(),
        "failed calls: {:?} of {}",
        tally.failed,
        tally.calls
    );
    assert!(tally.calls > 300, "a storm: {} calls", tally.calls);
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    let stats = stack.fake.stats();
    assert_eq!(stats.spent_refresh_token_reuses, 0, "{stats:?}");
    assert_eq!(
        refused_before, 0,
        "B first: nothing refused during the roll: {stats:?}"
    );
    let [first, second] = stale.metrics.snapshot().client_secret_rejected;
    assert!(
        first >= 1 && second == 0,
        "A refused, B never: {first}, {second}"
    );
    assert_eq!(stats.client_authentication_failures, first, "{stats:?}");
    assert!(
        stats.successful_refreshes >= 2 * installs.len() as u64,
        "refreshes happened throughout: {stats:?}"
    );
    let mut c = client(&stale).await;
    for id in &installs {
        let got = install_status(&mut c, id).await;
        assert_eq!(got.status(), pb::InstallStatus::Active, "{got:?}");
        let t = access_token(&mut c, id).await;
        assert!(stack.token_works(&t).await, "install {id} lost");
    }
    for r in replicas {
        assert_eq!(r.metrics.snapshot().client_secret_rejected, [0, 0]);
        r.stop().await.unwrap();
    }
    stale.stop().await.unwrap();
}

/// Only the deleted secret configured: refreshes fail with UNAVAILABLE naming
/// SNYK_CLIENT_SECRET, installs stay ACTIVE (a refused client is the app's configuration, not
/// the user's grant), their valid tokens are still served, and no refresh token is spent: a
/// replica with the right secret refreshes the same grants at once.
#[tokio::test]
async fn with_only_a_deleted_client_secret_refreshes_fail_naming_it_and_no_install_needs_reauth() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = access_token(&mut c, &install.install_id).await;
    let b = stack
        .fake
        .change_client_secret(SecretChange::Create)
        .unwrap()
        .expect("a new secret");
    stack
        .fake
        .change_client_secret(SecretChange::Delete {
            secret: CLIENT_SECRET.into(),
        })
        .unwrap();

    for _ in 0..3 {
        let err = c
            .force_refresh(force(&install.install_id, &t0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(err.message().contains("SNYK_CLIENT_SECRET"), "{err:?}");
        assert!(!err.message().contains(CLIENT_SECRET), "{err:?}");
    }
    // A new install fails the same way, and its code is not burnt.
    let (verifier, challenge) = pkce();
    let code = stack
        .fake
        .approve(CLIENT_ID, REDIRECT_URI, &challenge, None)
        .unwrap();
    let complete = pb::CompleteInstallRequest {
        code,
        code_verifier: verifier,
        redirect_uri: REDIRECT_URI.into(),
        reauthorize_install_id: String::new(),
    };
    let err = c.complete_install(complete.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("SNYK_CLIENT_SECRET"), "{err:?}");

    let got = install_status(&mut c, &install.install_id).await;
    assert_eq!(got.status(), pb::InstallStatus::Active, "{got:?}");
    assert_eq!(access_token(&mut c, &install.install_id).await, t0);
    let m = replica.metrics.snapshot();
    assert_eq!(
        (
            m.needs_reauth_rejected,
            m.needs_reauth_in_doubt,
            m.refresh_invalid_grant
        ),
        (0, 0, 0),
        "{m:?}"
    );
    assert_eq!(m.client_secret_rejected, [4, 0], "{m:?}");
    let stats = stack.fake.stats();
    assert_eq!(
        (stats.successful_refreshes, stats.spent_refresh_token_reuses),
        (0, 0),
        "{stats:?}"
    );

    // The secret fixed: the same grant refreshes, and the same code installs.
    replica.stop().await.unwrap();
    let fixed = stack.replica(&[("SNYK_CLIENT_SECRET", &b)]).await;
    let mut c = client(&fixed).await;
    let t1 = forced_token(&mut c, &install.install_id, &t0).await;
    assert!(stack.token_works(&t1).await);
    c.complete_install(complete)
        .await
        .expect("the code was not spent");
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
}

/// A caller's key rotates across a rolling restart: `caller=old` becomes `caller=new,caller=old`
/// on every replica, the caller switches to the new key, then `caller=old` goes. Not one call is
/// refused.
#[tokio::test]
async fn a_caller_key_rotates_across_a_rolling_restart_without_a_refused_call() {
    const NEW_KEY: &str = "projects-service-new-key-0123456789";
    let stack = Stack::start(hour_long_tokens()).await;
    let mut replicas = stack.replicas(3, &[]).await;
    let mut c = client(&replicas[0]).await;
    let installs = stack.installs(&mut c, 3).await;
    let keys =
        |projects: &str| format!("ops={CALLER_KEY},{projects},auth-service={AUTH_TOKEN_KEY}");
    let both = keys(&format!(
        "projects-service={NEW_KEY},projects-service={PROJECTS_TOKEN_KEY}"
    ));
    let new_only = keys(&format!("projects-service={NEW_KEY}"));

    let pool = Pool::new(&replicas, PROJECTS_TOKEN_KEY);
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, handles) = storm(&pool, &installs, 6, false, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    roll(
        &stack,
        &mut replicas,
        &pool,
        &[("TOKEN_SERVICE_CLIENT_KEYS", &both)],
    )
    .await;
    pool.switch_key(NEW_KEY);
    tokio::time::sleep(Duration::from_millis(500)).await;
    roll(
        &stack,
        &mut replicas,
        &pool,
        &[("TOKEN_SERVICE_CLIENT_KEYS", &new_only)],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = end(&stop, handles, &tally).await;

    assert!(
        tally.failed.is_empty(),
        "failed calls: {:?} of {}",
        tally.failed,
        tally.calls
    );
    assert!(tally.calls > 200, "a storm: {} calls", tally.calls);
    // The old key is now refused everywhere.
    for r in &replicas {
        let mut old = client_with_key(r.addr, PROJECTS_TOKEN_KEY).await;
        let err = old
            .get_access_token(by_install(&installs[0]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    }
    for r in replicas {
        r.stop().await.unwrap();
    }
}
