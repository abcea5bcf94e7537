//! Least privilege on token-service (docs/design.md, invariant 8): each caller may call only the
//! RPCs `TOKEN_SERVICE_CALLER_RPCS` grants it; health stays open, reflection is opt-in; start-up
//! refuses incomplete grants; every token hand-out and install change leaves an audit line.

use std::time::{Duration, Instant};

use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::{Code, Status};

const READER_KEY: &str = "reader-test-key-0123456789abcdef";

/// Every RPC once, with a request that has no lasting effect: the answer when permitted (`Ok`
/// or the expected refusal of the request itself), else PERMISSION_DENIED.
async fn call(c: &mut Client, rpc: &str, install_id: &str) -> Result<(), Status> {
    // A valid id nobody installed: deleting it succeeds (idempotent) and changes nothing.
    let unknown = "00000000-0000-4000-8000-000000000000";
    match rpc {
        "CompleteInstall" => c
            .complete_install(pb::CompleteInstallRequest::default())
            .await
            .map(drop),
        "GetAccessToken" => c.get_access_token(by_install(install_id)).await.map(drop),
        "ForceRefresh" => c
            .force_refresh(force(install_id, "not-the-stored-token"))
            .await
            .map(drop),
        "GetInstall" => c
            .get_install(pb::GetInstallRequest {
                install_id: install_id.into(),
            })
            .await
            .map(drop),
        "ListInstalls" => c
            .list_installs(pb::ListInstallsRequest::default())
            .await
            .map(drop),
        "DeleteInstall" => c
            .delete_install(pb::DeleteInstallRequest {
                install_id: unknown.into(),
            })
            .await
            .map(drop),
        other => panic!("no such RPC {other}"),
    }
}

const RPCS: [&str; 6] = [
    "CompleteInstall",
    "GetAccessToken",
    "ForceRefresh",
    "GetInstall",
    "ListInstalls",
    "DeleteInstall",
];

#[tokio::test]
async fn each_caller_may_call_exactly_its_rpcs() {
    let stack = Stack::start(fake_config()).await;
    let keys = format!(
        "ops={CALLER_KEY},projects-service={PROJECTS_TOKEN_KEY},auth-service={AUTH_TOKEN_KEY},reader={READER_KEY}"
    );
    // auth-service's real grant (AUTH_SERVICE_RPCS) includes DeleteInstall (Disconnect), which
    // would delete the install this table probes: the check is pinned with a grant of its own.
    let grants = format!(
        "ops=*,projects-service={PROJECTS_SERVICE_RPCS},auth-service=CompleteInstall+GetInstall,reader=GetInstall+ListInstalls"
    );
    let replica = stack
        .replica(&[
            ("TOKEN_SERVICE_CLIENT_KEYS", &keys),
            ("TOKEN_SERVICE_CALLER_RPCS", &grants),
        ])
        .await;
    let install = stack.install(&mut client(&replica).await).await;
    let id = &install.install_id;

    let table: [(&str, &str, &[&str]); 4] = [
        ("ops", CALLER_KEY, &RPCS),
        (
            "projects-service",
            PROJECTS_TOKEN_KEY,
            &["GetAccessToken", "ForceRefresh"],
        ),
        (
            "auth-service",
            AUTH_TOKEN_KEY,
            &["CompleteInstall", "GetInstall"],
        ),
        ("reader", READER_KEY, &["GetInstall", "ListInstalls"]),
    ];
    for (caller, key, allowed) in table {
        let mut c = client_with_key(replica.addr, key).await;
        for rpc in RPCS {
            let result = call(&mut c, rpc, id).await;
            if allowed.contains(&rpc) {
                match (rpc, result) {
                    // An empty CompleteInstall is refused as a bad request, past the grant check.
                    ("CompleteInstall", Err(s)) => {
                        assert_eq!(s.code(), Code::InvalidArgument, "{caller} {rpc}: {s:?}")
                    }
                    (_, r) => assert!(r.is_ok(), "{caller} may call {rpc}: {r:?}"),
                }
            } else {
                let s = result.expect_err(rpc);
                assert_eq!(s.code(), Code::PermissionDenied, "{caller} {rpc}: {s:?}");
                assert!(s.message().contains(rpc), "{caller} {rpc}: {}", s.message());
                assert!(
                    !s.message().contains(key),
                    "{caller} {rpc}: key in the message"
                );
            }
        }
    }
    // Nobody's refused call changed anything: the install is still there, and no refresh ran.
    let mut ops = client(&replica).await;
    assert_eq!(
        install_status(&mut ops, id).await.status(),
        pb::InstallStatus::Active
    );
    assert_eq!(stack.refresh_calls(), 0);

    // Authentication still comes first: no key or a wrong key is UNAUTHENTICATED, never a hint
    // about grants.
    let mut nobody = client_with_key(replica.addr, "not-a-key-of-anyone-at-all").await;
    for rpc in RPCS {
        let s = call(&mut nobody, rpc, id).await.expect_err(rpc);
        assert_eq!(s.code(), Code::Unauthenticated, "{rpc}: {s:?}");
    }
}

#[tokio::test]
async fn health_is_open_without_a_key_and_reflection_only_when_enabled() {
    let stack = Stack::start(fake_config()).await;
    let off = stack.replica(&[]).await;
    let on = stack.replica(&[("TOKEN_SERVICE_REFLECTION", "true")]).await;

    for replica in [&off, &on] {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", replica.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "snykapps.token.v1.TokenService".into(),
            })
            .await
            .expect("health answers without a key")
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
    }

    let err = list_services(&off)
        .await
        .expect_err("reflection is off by default");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    let listed = list_services(&on).await.expect("reflection is on");
    assert!(
        String::from_utf8_lossy(&listed).contains("snykapps.token.v1.TokenService"),
        "{listed:?}"
    );
}

/// Asks gRPC reflection (v1) to list the services: the answer's raw bytes.
async fn list_services(replica: &Replica) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", replica.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    // ServerReflectionRequest { list_services (field 7): "" }
    let request = tonic::Request::new(futures::stream::iter([vec![0x3a, 0x00]]));
    let path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        .parse()
        .unwrap();
    let mut answers = grpc.streaming(request, path, RawCodec).await?.into_inner();
    Ok(answers.message().await?.unwrap_or_default())
}

/// Starts token-service with `env` and expects it to refuse: its output (stderr, then stdout).
/// A service that starts anyway is killed after a while and fails the test.
async fn refused_start(what: &str, env: Vec<(String, String)>) -> String {
    let run = tokio::process::Command::new(system_tests::process::binary("token-service"))
        .env_clear()
        .envs(env)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("{what}: token-service started anyway"))
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{what}: exited with success\n{log}");
    log
}

#[tokio::test]
async fn start_up_refuses_incomplete_grants_naming_the_caller_or_rpc() {
    let stack = Stack::start(fake_config()).await;
    let keys = format!("ops={CALLER_KEY},projects-service={PROJECTS_TOKEN_KEY}");
    let cases = [
        // A caller with a key but no entry.
        ("ops=*", "\"projects-service\""),
        // An RPC name that does not exist.
        (
            "ops=*,projects-service=GetAccessToken+GetTokens",
            "\"GetTokens\"",
        ),
        // A grant for a caller without a key.
        ("ops=*,projects-service=GetAccessToken,ghost=*", "\"ghost\""),
    ];
    for (grants, named) in cases {
        let env = stack.token_env(&[
            ("TOKEN_SERVICE_CLIENT_KEYS", &keys),
            ("TOKEN_SERVICE_CALLER_RPCS", grants),
        ]);
        let log = refused_start(grants, env).await;
        assert!(
            log.contains("TOKEN_SERVICE_CALLER_RPCS") && log.contains(named),
            "{grants}: the error names neither the variable nor {named}\n{log}"
        );
        assert!(
            !log.contains(CALLER_KEY) && !log.contains(PROJECTS_TOKEN_KEY),
            "{log}"
        );
    }
    // Unset: refused, naming the variable.
    let env: Vec<_> = stack
        .token_env(&[])
        .into_iter()
        .filter(|(k, _)| k != "TOKEN_SERVICE_CALLER_RPCS")
        .collect();
    let log = refused_start("unset", env).await;
    assert!(log.contains("TOKEN_SERVICE_CALLER_RPCS"), "{log}");
}

/// The JSON log lines of `p` at target `audit`.
fn audit_lines(p: &process::Process) -> Vec<serde_json::Value> {
    p.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect()
}

/// Waits until `p` logged an audit line matching `pred` (log writes are not synchronous with
/// the RPC's answer).
async fn audit_line(
    p: &process::Process,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = audit_lines(p).into_iter().find(|v| pred(v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no such audit line; log:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn hand_outs_and_install_changes_are_audited_without_tokens() {
    let stack = Stack::start(fake_config()).await;
    let (p, addr) = stack.replica_process(&[("LOG_FORMAT", "json")]).await;
    let mut ops = client_with_key(addr, CALLER_KEY).await;
    let install = stack.install(&mut ops).await;
    let id = install.install_id.clone();
    let org = install.orgs[0].id.clone();

    // A hand-out to projects-service, by install, with a client-supplied request id.
    let mut projects = client_with_key(addr, PROJECTS_TOKEN_KEY).await;
    let mut req = tonic::Request::new(by_install(&id));
    req.metadata_mut()
        .insert("x-request-id", "client-chosen-id".parse().unwrap());
    let token = projects
        .get_access_token(req)
        .await
        .unwrap()
        .into_inner()
        .access_token;
    // One by org, and a refused delete.
    let by_org_token = projects
        .get_access_token(by_org(&org))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let denied = projects
        .delete_install(pb::DeleteInstallRequest {
            install_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let field = |v: &serde_json::Value, k: &str| v["fields"][k].as_str().map(str::to_owned);
    let hand_out = audit_line(&p, |v| {
        field(v, "rpc").as_deref() == Some("GetAccessToken") && field(v, "org_id").is_none()
    })
    .await;
    assert_eq!(
        field(&hand_out, "caller").as_deref(),
        Some("projects-service")
    );
    assert_eq!(field(&hand_out, "install_id"), Some(id.clone()));
    assert_eq!(field(&hand_out, "outcome").as_deref(), Some("ok"));
    // The client's request id is kept apart from ours, never as `request_id`.
    let grpc = hand_out["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "grpc"))
        .unwrap_or_else(|| panic!("no grpc span: {hand_out}"));
    assert_eq!(grpc["client_request_id"], "client-chosen-id", "{hand_out}");
    assert!(
        grpc["request_id"]
            .as_str()
            .is_some_and(|r| r != "client-chosen-id"),
        "{hand_out}"
    );

    let by_org_line = audit_line(&p, |v| field(v, "org_id").as_deref() == Some(org.as_str())).await;
    assert_eq!(field(&by_org_line, "install_id"), Some(id.clone()));
    assert_eq!(
        field(&by_org_line, "caller").as_deref(),
        Some("projects-service")
    );

    let completed = audit_line(&p, |v| {
        field(v, "rpc").as_deref() == Some("CompleteInstall")
    })
    .await;
    assert_eq!(field(&completed, "caller").as_deref(), Some("ops"));
    assert_eq!(field(&completed, "install_id"), Some(id.clone()));
    assert_eq!(field(&completed, "outcome").as_deref(), Some("ok"));

    let refused = audit_line(&p, |v| field(v, "rpc").as_deref() == Some("DeleteInstall")).await;
    assert_eq!(
        field(&refused, "caller").as_deref(),
        Some("projects-service")
    );
    assert_eq!(
        field(&refused, "outcome").as_deref(),
        Some("PermissionDenied")
    );

    // Reading an install is audited, and so is a call with an unknown key (never the key).
    ops.get_install(pb::GetInstallRequest {
        install_id: id.clone(),
    })
    .await
    .unwrap();
    audit_line(&p, |v| {
        field(v, "rpc").as_deref() == Some("GetInstall")
            && field(v, "caller").as_deref() == Some("ops")
            && field(v, "install_id").as_deref() == Some(id.as_str())
    })
    .await;
    let guessed = "guessed-key-0123456789abcdefghij";
    let mut stranger = client_with_key(addr, guessed).await;
    assert!(stranger.get_access_token(by_install(&id)).await.is_err());
    audit_line(&p, |v| {
        field(v, "rpc").as_deref() == Some("GetAccessToken")
            && field(v, "outcome").as_deref() == Some("Unauthenticated")
    })
    .await;

    // A delete by ops: the install change is audited.
    ops.delete_install(pb::DeleteInstallRequest {
        install_id: id.clone(),
    })
    .await
    .unwrap();
    audit_line(&p, |v| {
        field(v, "rpc").as_deref() == Some("DeleteInstall")
            && field(v, "caller").as_deref() == Some("ops")
            && field(v, "outcome").as_deref() == Some("ok")
            && field(v, "install_id").as_deref() == Some(id.as_str())
    })
    .await;

    let log = p.log();
    for secret in [
        token.as_str(),
        by_org_token.as_str(),
        CALLER_KEY,
        PROJECTS_TOKEN_KEY,
        guessed,
    ] {
        assert!(!log.contains(secret), "the log holds a secret:\n{log}");
    }
}
