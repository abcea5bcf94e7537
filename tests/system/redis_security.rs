//! Redis as production runs it: over TLS only (`rediss://`, a throwaway CA in `REDIS_CA_CERT`),
//! each service as its own user under the repository's ACL files (`deploy/redis/*.acl`), and
//! nothing a user was not granted.

use std::time::{Duration, Instant};

use snykapps_proto::token_v1 as pb;
use system_tests::*;
use test_support::{RedisOptions, RedisServer};

/// A TLS-only server (no plain TCP port) under `acl`, with certificates made in `dir`.
fn tls_redis(dir: &std::path::Path, acl: &str) -> (RedisServer, test_support::Certificates) {
    let certs = test_support::certificates(dir);
    let server = RedisServer::start_with(RedisOptions {
        acl: Some(test_support::acl_file(acl)),
        tls: Some(certs.clone()),
        ..RedisOptions::default()
    })
    .expect("a TLS redis-server starts");
    (server, certs)
}

#[tokio::test]
async fn the_whole_install_runs_over_tls_only_redis_as_each_services_own_user() {
    let (grants_dir, auth_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = test_support::free_port().unwrap();
    let mut fake = hour_long_tokens();
    fake.redirect_uris.push(auth_redirect_uri(port));
    let mut stack = Stack::start(fake).await;
    let (grants, grants_certs) = tls_redis(grants_dir.path(), "redis");
    let grants_url = grants.tls_url_as(TOKEN_SERVICE_USER).unwrap();
    stack.redis = grants;
    // auth-service's Redis has a CA of its own; REDIS_CA_CERT is per service.
    let (auth_redis, auth_certs) = tls_redis(auth_dir.path(), "redis-auth");
    let auth_url = auth_redis.tls_url_as(AUTH_SERVICE_USER).unwrap();
    let on_tls: &[(&str, &str)] = &[
        ("REDIS_URL", &grants_url),
        ("REDIS_CA_CERT", &grants_certs.ca),
    ];
    let app = AuthStack::assemble(
        stack,
        auth_redis,
        port,
        on_tls,
        &[],
        &[
            ("AUTH_REDIS_URL", &auth_url),
            ("REDIS_CA_CERT", &auth_certs.ca),
        ],
    )
    .await;

    // Install through the browser flow (auth-service's states, token-service's grants).
    let browser = Browser::new();
    let id = app.install(&browser).await;
    let mut a = app.token_client().await;
    let mut watch = watch_events(&mut a, "0").await.expect("watching starts");
    assert_eq!(
        kinds(&next_events(&mut watch, 1).await),
        [pb::InstallEventKind::Installed]
    );

    // A second replica over TLS; a change it makes reaches the first one's cache through the
    // RESP3 tracking connection (also TLS, also its own user).
    let b = app.stack.replica(on_tls).await;
    let mut b = client(&b).await;
    let replica_a = app.replica.as_ref().unwrap();
    replica_a.until_cache_tracked().await;
    let t0 = access_token(&mut a, &id).await;
    let t1 = forced_token(&mut b, &id, &t0).await;
    assert_ne!(t0, t1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while access_token(&mut a, &id).await != t1 {
        assert!(
            Instant::now() < deadline,
            "the change never reached replica a's cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        kinds(&next_events(&mut watch, 1).await),
        [pb::InstallEventKind::Refreshed]
    );
    // projects-service lists through the tokens token-service keeps in that Redis.
    let install = install_status(&mut a, &id).await;
    let org = &install.orgs[0].id;
    let listed = app.projects.get(&format!("/v1/orgs/{org}/projects")).await;
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn without_the_ca_token_service_and_auth_service_refuse_to_start_naming_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::start(fake_config()).await;
    let (grants, _certs) = tls_redis(dir.path(), "redis");
    let url = grants.tls_url_as(TOKEN_SERVICE_USER).unwrap();
    stack.redis = grants;
    let err = token_service::Application::build(stack.settings(&[("REDIS_URL", &url)]))
        .await
        .expect_err("no CA, no start");
    let err = format!("{err:#}");
    assert!(err.contains("REDIS_URL"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(
        !err.contains(&test_support::password_of(TOKEN_SERVICE_USER)),
        "{err}"
    );

    let app = AuthStack::start().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let (auth_redis, _certs) = tls_redis(auth_dir.path(), "redis-auth");
    let vars = app.auth_vars(&[
        (
            "AUTH_REDIS_URL",
            &auth_redis.tls_url_as(AUTH_SERVICE_USER).unwrap(),
        ),
        ("AUTH_SERVICE_ADDR", "127.0.0.1:0"),
    ]);
    let err = AuthService::spawn(auth_service::Settings::from_lookup(lookup(&vars)).unwrap())
        .await
        .err()
        .expect("no CA, no start");
    let err = format!("{err:#}");
    assert!(
        err.contains("AUTH_REDIS_URL") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}

/// What the server says to `cmd` run as `user` with its password.
async fn as_user(
    server: &RedisServer,
    user: &str,
    cmd: &redis::Cmd,
) -> Result<redis::Value, String> {
    let mut c = redis::Client::open(server.url_as(user))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    cmd.query_async(&mut c).await.map_err(|e| e.to_string())
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

#[tokio::test]
async fn each_user_is_held_to_its_own_keys_and_commands() {
    let grants = RedisServer::start_with(grants_redis()).unwrap();
    let auth = auth_redis();
    let grant_key = "snykapps:grant:{00000000-0000-4000-8000-000000000000}";
    // auth-service's user, on its own server, reaches neither a grant nor the event stream.
    for refused in [
        cmd(&["GET", grant_key]),
        cmd(&["HGET", grant_key, "rec"]),
        cmd(&["XADD", "snykapps:events", "*", "kind", "forged"]),
        cmd(&["XRANGE", "snykapps:events", "-", "+"]),
        cmd(&["KEYS", "*"]),
        cmd(&["FLUSHALL"]),
    ] {
        let err = as_user(&auth, AUTH_SERVICE_USER, &refused)
            .await
            .unwrap_err();
        assert!(err.to_uppercase().contains("NOPERM"), "{refused:?}: {err}");
    }
    as_user(
        &auth,
        AUTH_SERVICE_USER,
        &cmd(&["SET", "auth:state:x", "1", "EX", "5"]),
    )
    .await
    .expect("its own keys");
    // token-service's user: its prefix, never another's keys or an admin command.
    for refused in [
        cmd(&["GET", "auth:state:x"]),
        cmd(&["SET", "other", "1"]),
        cmd(&["KEYS", "*"]),
        cmd(&["FLUSHALL"]),
        cmd(&["CONFIG", "SET", "appendonly", "no"]),
        cmd(&["ACL", "LIST"]),
        cmd(&["CLIENT", "KILL", "TYPE", "normal"]),
        cmd(&["BGSAVE"]),
    ] {
        let err = as_user(&grants, TOKEN_SERVICE_USER, &refused)
            .await
            .unwrap_err();
        assert!(err.to_uppercase().contains("NOPERM"), "{refused:?}: {err}");
    }
    // Nobody gets in without a user: the default user is off on both servers.
    for server in [&grants, &auth] {
        let plain = format!("redis+unix://{}", server.socket_path().display());
        let mut c = redis::Client::open(plain)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let err = cmd(&["PING"])
            .query_async::<String>(&mut c)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("NOAUTH"), "{err}");
    }
}

/// The password in `REDIS_URL` appears in no log line of a running token-service (debug level,
/// an install and token hand-outs included), nor in the start-up error of a wrong one.
#[tokio::test]
async fn a_redis_password_never_reaches_the_logs() {
    use system_tests::process::{self, Process};
    let mut stack = Stack::start(fake_config()).await;
    stack.redis = RedisServer::start_with(RedisOptions {
        tcp: true,
        ..grants_redis()
    })
    .unwrap();
    let url = stack.redis.tcp_url_as(TOKEN_SERVICE_USER).unwrap();
    let password = test_support::password_of(TOKEN_SERVICE_USER);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], test_support::free_port().unwrap()).into();
    let env = stack.token_env(&[
        ("TOKEN_SERVICE_ADDR", &addr.to_string()),
        ("REDIS_URL", &url),
        ("RUST_LOG", "debug"),
    ]);
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut token = Process::spawn("token-service", &env);
    process::wait_grpc_serving(&mut token, addr, "snykapps.token.v1.TokenService").await;
    let mut c = client_with_key(addr, CALLER_KEY).await;
    let install = stack.install(&mut c).await;
    access_token(&mut c, &install.install_id).await;
    token.kill9();
    let log = token.log();
    assert!(
        log.contains("token-service:***@"),
        "the target is logged redacted:\n{log}"
    );
    assert!(
        !log.contains(&password),
        "the password is in the log:\n{log}"
    );

    // A wrong password: the start-up error names the variable, not the password.
    let wrong = url.replace(&password, "wrong-s3cret-password");
    let mut env = env.clone();
    env.retain(|(k, _)| *k != "REDIS_URL");
    env.push(("REDIS_URL", wrong));
    let mut refused = Process::spawn("token-service", &env);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refused.log().contains("REDIS_URL") {
        assert!(
            Instant::now() < deadline,
            "no start-up error:\n{}",
            refused.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    refused.kill9();
    let log = refused.log();
    assert!(
        !log.contains("wrong-s3cret"),
        "the password is in the log:\n{log}"
    );
}

/// A Redis password rotates with no failed call: while the user holds the old and the new
/// password (compose's `REDIS_PASSWORD_PREVIOUS`), replicas on either serve; the old one is
/// dropped once every replica runs with the new one, and only new connections see it.
#[tokio::test]
async fn a_redis_password_rotates_across_a_rolling_restart_without_a_failed_call() {
    const OLD: &str = "token-service-old-password";
    let dir = tempfile::tempdir().unwrap();
    // The repository's ACL file, its user given a second (the old) password, as compose fills it
    // during a rotation.
    let acl = dir.path().join("redis.acl");
    let repo = std::fs::read_to_string(test_support::acl_file("redis")).unwrap();
    std::fs::write(
        &acl,
        repo.replace(">@PASSWORD@", &format!(">@PASSWORD@ >{OLD}")),
    )
    .unwrap();
    let mut stack = Stack::start(hour_long_tokens()).await;
    stack.redis = RedisServer::start_with(RedisOptions {
        tcp: true,
        acl: Some(acl),
        ..RedisOptions::default()
    })
    .unwrap();
    let new_url = stack.redis.tcp_url_as(TOKEN_SERVICE_USER).unwrap();
    let old_url = new_url.replace(&test_support::password_of(TOKEN_SERVICE_USER), OLD);
    let old = stack.replica(&[("REDIS_URL", &old_url)]).await;
    let new = stack.replica(&[("REDIS_URL", &new_url)]).await;
    let mut c = client(&old).await;
    let id = stack.install(&mut c).await.install_id;

    // Both serve, each forcing refreshes the other must see (writes and reads on both).
    let mut clients = [client(&old).await, client(&new).await];
    let mut token = access_token(&mut clients[0], &id).await;
    for round in 0..6 {
        let c = &mut clients[round % 2];
        token = forced_token(c, &id, &token).await;
    }
    // The old replica restarts with the new password; then the old password goes.
    old.stop().await.unwrap();
    let restarted = stack.replica(&[("REDIS_URL", &new_url)]).await;
    let mut admin = stack.redis_conn().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(TOKEN_SERVICE_USER)
        .arg(format!("<{OLD}"))
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut clients = [client(&restarted).await, client(&new).await];
    for round in 0..6 {
        let c = &mut clients[round % 2];
        token = forced_token(c, &id, &token).await;
    }
    assert_eq!(
        install_status(&mut clients[0], &id).await.status(),
        pb::InstallStatus::Active
    );
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
    // The old password no longer opens a connection.
    let err = token_service::Application::build(stack.settings(&[("REDIS_URL", &old_url)]))
        .await
        .expect_err("the old password is gone");
    assert!(format!("{err:#}").contains("REDIS_URL"), "{err:#}");
}
