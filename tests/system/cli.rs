//! The operator tools (`token-service installs …`, `token-service events tail`), the real binary
//! against a running token-service: with the service's own environment (as `docker compose exec
//! token-service token-service installs list` runs them) or with `--url` and `--key-file`; what
//! they print for a person and for a script, and their exit codes (0 done, 1 failed, 2 usage).

use std::{process::Stdio, time::Duration};

use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::Code;

/// What the tools' caller `ops` may call, as in docker-compose.yml.
const OPS_RPCS: &str = "ListInstalls+GetInstall+DeleteInstall+WatchInstallEvents";

/// A valid install id nobody installed.
const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

/// One run of the tool.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:#?}");
        &self.stdout
    }

    #[track_caller]
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("not one JSON document ({e}): {self:#?}"))
    }

    #[track_caller]
    fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert!(self.stdout.is_empty(), "{self:#?}");
        &self.stderr
    }
}

/// `token-service ARGS…` with exactly `env` (plus PATH), stdin not a terminal; fails the test
/// when it does not finish within 30 s.
async fn run(env: &[(String, String)], args: &[&str]) -> Ran {
    let mut cmd = tokio::process::Command::new(process::binary("token-service"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`token-service {}` did not finish within 30 s",
                args.join(" ")
            )
        })
        .expect("token-service runs");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run`] on a terminal (a pty from util-linux `script`), typing `input`: stdout and stderr
/// come back together, as a person sees them.
async fn run_on_terminal(env: &[(String, String)], args: &[&str], input: &str) -> Ran {
    use tokio::io::AsyncWriteExt as _;
    let command = std::iter::once(process::binary("token-service").display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("util-linux `script` runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{command}` on a terminal did not finish within 30 s"))
        .unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running token-service whose caller `ops` has the grants of docker-compose.yml, and its
/// own environment pointing at it (what `docker compose exec` gives the tool).
struct Ops {
    stack: Stack,
    replica: Replica,
    env: Vec<(String, String)>,
}

impl Ops {
    async fn start() -> Ops {
        Ops::start_with(hour_long_tokens()).await
    }

    /// [`Ops::start`] against a fake Snyk configured as `fake`.
    async fn start_with(fake: fake_snyk::Config) -> Ops {
        let stack = Stack::start(fake).await;
        let rpcs = format!(
            "ops={OPS_RPCS},projects-service={PROJECTS_SERVICE_RPCS},auth-service={AUTH_SERVICE_RPCS}"
        );
        let overrides = [("TOKEN_SERVICE_CALLER_RPCS", rpcs.as_str())];
        let replica = stack.replica(&overrides).await;
        let mut env = stack.token_env(&overrides);
        for (k, v) in &mut env {
            if k == "TOKEN_SERVICE_ADDR" {
                *v = replica.addr.to_string();
            }
        }
        Ops {
            stack,
            replica,
            env,
        }
    }

    async fn run(&self, args: &[&str]) -> Ran {
        run(&self.env, args).await
    }

    /// A new install, as auth-service completes one.
    async fn install(&self) -> pb::Install {
        let mut auth = client_with_key(self.replica.addr, AUTH_TOKEN_KEY).await;
        self.stack.install(&mut auth).await
    }

    /// A new install that Snyk no longer honours, found out by a forced refresh: NEEDS_REAUTH
    /// (refresh_token_rejected). Returns it with the access token it had.
    async fn install_needing_reauth(&self) -> (pb::Install, String) {
        let install = self.install().await;
        let mut projects = client_with_key(self.replica.addr, PROJECTS_TOKEN_KEY).await;
        let token = access_token(&mut projects, &install.install_id).await;
        self.stack.revoke_at_snyk(&token).await;
        let err = projects
            .force_refresh(force(&install.install_id, &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        (install, token)
    }

    /// GetInstall with the tests' own all-RPC key.
    async fn get(&self, id: &str) -> Result<pb::Install, tonic::Status> {
        client(&self.replica)
            .await
            .get_install(pb::GetInstallRequest {
                install_id: id.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

fn org_ids(install: &pb::Install) -> Vec<String> {
    install.orgs.iter().map(|o| o.id.clone()).collect()
}

#[tokio::test]
async fn installs_list_for_a_person_and_for_scripts_with_the_status_filter() {
    let ops = Ops::start().await;
    let active = ops.install().await;
    let (stale, _) = ops.install_needing_reauth().await;
    let (a, s) = (active.install_id.as_str(), stale.install_id.as_str());

    // For a person: a header and one aligned row per install.
    let table = ops.run(&["installs", "list"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(
        lines[0].starts_with("INSTALL ")
            && lines[0].contains("  STATUS ")
            && lines[0].ends_with("ACCESS TOKEN EXPIRES"),
        "{table:#?}"
    );
    assert_eq!(lines.len(), 3, "{table:#?}");
    let row = |id: &str| *lines.iter().find(|l| l.starts_with(id)).expect(id);
    assert!(row(a).contains("  active  "), "{table:#?}");
    assert!(
        row(s).contains("  needs-reauth: refresh_token_rejected  "),
        "{table:#?}"
    );
    let status_column = lines[0].find("STATUS").unwrap();
    for id in [a, s] {
        assert_eq!(
            &row(id)[status_column - 2..status_column],
            "  ",
            "{table:#?}"
        );
    }

    // For scripts: one JSON array.
    let all = ops.run(&["installs", "list", "--json"]).await.json();
    let all = all.as_array().expect("an array");
    assert_eq!(all.len(), 2, "{all:?}");
    let by_id = |id: &str| all.iter().find(|i| i["install_id"] == id).expect(id);
    assert_eq!(by_id(a)["status"], "active");
    assert_eq!(by_id(a)["needs_reauth_reason"], serde_json::Value::Null);
    assert_eq!(by_id(s)["status"], "needs_reauth");
    assert_eq!(by_id(s)["needs_reauth_reason"], "refresh_token_rejected");
    let orgs: Vec<&str> = by_id(a)["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(orgs, org_ids(&active));

    // The filter, both ways.
    let stale_only = ops
        .run(&["installs", "list", "--status", "needs-reauth", "--json"])
        .await
        .json();
    let ids: Vec<&str> = stale_only
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["install_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [s]);
    let active_only = ops.run(&["installs", "list", "--status", "active"]).await;
    assert!(active_only.ok().contains(a), "{active_only:#?}");
    assert!(!active_only.ok().contains(s), "{active_only:#?}");

    // Every page is read: one install per ListInstalls call.
    let paged = ops
        .run(&["installs", "list", "--json", "--page-size", "1"])
        .await
        .json();
    assert_eq!(paged.as_array().unwrap().len(), 2, "{paged}");

    // Without the service's environment: --url and --key-file alone, no secret of the service.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ops.key");
    std::fs::write(&key_file, format!("{CALLER_KEY}\n")).unwrap();
    let url = format!("http://{}", ops.replica.addr);
    let key_file = key_file.to_str().unwrap();
    let bare = run(
        &[],
        &[
            "installs",
            "list",
            "--json",
            "--url",
            &url,
            "--key-file",
            key_file,
        ],
    )
    .await
    .json();
    assert_eq!(bare.as_array().unwrap().len(), 2, "{bare}");
}

#[tokio::test]
async fn installs_list_takes_the_ops_key_from_the_services_key_file() {
    // As in the Kubernetes pod (`kubectl exec deploy/token-service -- token-service installs
    // list`): the service's client keys are a mounted file that `<NAME>_FILE` names.
    let ops = Ops::start().await;
    let install = ops.install().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("TOKEN_SERVICE_CLIENT_KEYS");
    let mut env = ops.env.clone();
    let at = env
        .iter()
        .position(|(k, _)| k == "TOKEN_SERVICE_CLIENT_KEYS")
        .expect("the service's keys");
    let (_, keys) = env.remove(at);
    std::fs::write(&file, format!("{keys}\n")).unwrap();
    env.push((
        "TOKEN_SERVICE_CLIENT_KEYS_FILE".into(),
        file.display().to_string(),
    ));
    let listed = run(&env, &["installs", "list", "--json"]).await.json();
    let ids: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|i| i["install_id"].as_str())
        .collect();
    assert_eq!(ids, [install.install_id.as_str()], "{listed:#}");
}

#[tokio::test]
async fn installs_show_found_unknown_and_malformed() {
    let ops = Ops::start().await;
    let install = ops.install().await;
    let id = install.install_id.as_str();

    let block = ops.run(&["installs", "show", id]).await;
    let text = block.ok();
    assert!(
        text.contains(&format!("Install       {id}\n")),
        "{block:#?}"
    );
    assert!(text.contains("Status        active\n"), "{block:#?}");
    for org in &install.orgs {
        assert!(
            text.contains(&format!("{} ({})", org.name, org.id)),
            "{block:#?}"
        );
    }

    let json = ops.run(&["installs", "show", id, "--json"]).await.json();
    assert_eq!(json["install_id"], id);
    assert_eq!(json["status"], "active");
    assert_eq!(json["scope"], install.scope.as_str());

    let unknown = ops.run(&["installs", "show", UNKNOWN]).await;
    let stderr = unknown.failed(1);
    assert!(
        stderr.contains("GetInstall") && stderr.contains(&format!("install {UNKNOWN} not found")),
        "{unknown:#?}"
    );

    let malformed = ops.run(&["installs", "show", "not-an-install"]).await;
    assert!(malformed.failed(2).contains("UUID"), "{malformed:#?}");
}

#[tokio::test]
async fn installs_delete_asks_refuses_without_a_terminal_and_deletes_with_yes() {
    let ops = Ops::start().await;
    let (install, token) = {
        let install = ops.install().await;
        let mut projects = client_with_key(ops.replica.addr, PROJECTS_TOKEN_KEY).await;
        let token = access_token(&mut projects, &install.install_id).await;
        (install, token)
    };
    let id = install.install_id.as_str();

    // Nobody can confirm (stdin is not a terminal) and nobody said --yes: refused, kept.
    let refused = ops.run(&["installs", "delete", id]).await;
    let stderr = refused.failed(2);
    assert!(
        stderr.contains("without confirmation") && stderr.contains("--yes"),
        "{refused:#?}"
    );
    ops.get(id).await.expect("the install is still there");
    assert!(ops.stack.token_works(&token).await, "still valid at Snyk");

    // On a terminal it asks, naming the install's orgs; anything but yes keeps the install.
    let org = &install.orgs[0];
    let question = format!(
        "Delete install {id} (orgs {} ({}))? This revokes its refresh token at Snyk. [y/N]",
        org.name, org.id
    );
    let declined = run_on_terminal(&ops.env, &["installs", "delete", id], "n\n").await;
    assert_eq!(declined.code, Some(1), "{declined:#?}");
    assert!(
        declined.stdout.contains(&question)
            && declined
                .stdout
                .contains(&format!("not confirmed: install {id} was not deleted")),
        "{declined:#?}"
    );
    ops.get(id).await.expect("the install is still there");

    let deleted = ops.run(&["installs", "delete", id, "--yes"]).await;
    assert!(
        deleted
            .ok()
            .starts_with(&format!("Deleted install {id} (orgs ")),
        "{deleted:#?}"
    );
    assert_eq!(ops.get(id).await.unwrap_err().code(), Code::NotFound);
    assert!(
        !ops.stack.token_works(&token).await,
        "the grant was revoked at Snyk"
    );
    let gone = ops.run(&["installs", "show", id]).await;
    assert!(gone.failed(1).contains("not found"), "{gone:#?}");

    let other = ops.install().await;
    let confirmed =
        run_on_terminal(&ops.env, &["installs", "delete", &other.install_id], "y\n").await;
    assert_eq!(confirmed.code, Some(0), "{confirmed:#?}");
    assert!(
        confirmed
            .stdout
            .contains(&format!("Deleted install {}", other.install_id)),
        "{confirmed:#?}"
    );
    assert_eq!(
        ops.get(&other.install_id).await.unwrap_err().code(),
        Code::NotFound
    );

    let unknown = ops.run(&["installs", "delete", UNKNOWN, "--yes"]).await;
    assert!(
        unknown.failed(1).contains("nothing was deleted"),
        "{unknown:#?}"
    );
}

#[tokio::test]
async fn an_org_name_from_snyk_is_printed_escaped_and_kept_as_is_in_json() {
    // A name that would clear the screen, retitle the terminal, ring, start a forged line and
    // reverse what follows it, were it printed as it is.
    let name = "Evil\u{1b}[2J\u{1b}]0;owned\u{7}\nDeleted install x\u{202e}Org";
    let shown = "Evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\nDeleted install x\\u{202e}Org";
    let mut fake = hour_long_tokens();
    fake.orgs = vec![fake_snyk::OrgSeed::new(name, 1)];
    let ops = Ops::start_with(fake).await;
    let install = ops.install().await;
    let (id, org) = (install.install_id.as_str(), &install.orgs[0]);
    assert_eq!(
        org.name, name,
        "token-service keeps the name as Snyk gave it"
    );
    let raw_free = |what: &str, ran: &Ran, text: &str| {
        assert!(
            !text.contains(name) && !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{what}: printed raw: {ran:#?}"
        );
        assert!(text.contains(shown), "{what}: not shown escaped: {ran:#?}");
    };

    let list = ops.run(&["installs", "list"]).await;
    raw_free("installs list", &list, list.ok());
    assert_eq!(list.ok().lines().count(), 2, "no forged row: {list:#?}");
    let show = ops.run(&["installs", "show", id]).await;
    raw_free("installs show", &show, show.ok());
    assert!(
        show.ok()
            .contains(&format!("Orgs          {shown} ({})\n", org.id)),
        "{show:#?}"
    );

    // The delete prompt, on a terminal (declined: the install stays).
    let declined = run_on_terminal(&ops.env, &["installs", "delete", id], "n\n").await;
    assert_eq!(declined.code, Some(1), "{declined:#?}");
    raw_free("the delete prompt", &declined, &declined.stdout);
    assert!(
        declined.stdout.contains(&format!(
            "Delete install {id} (orgs {shown} ({}))? This revokes",
            org.id
        )),
        "{declined:#?}"
    );
    ops.get(id).await.expect("the install is still there");

    // For scripts: the name exactly as received (JSON escapes it its own way).
    let json = ops.run(&["installs", "list", "--json"]).await.json();
    assert_eq!(json[0]["orgs"][0]["name"], name, "{json}");
    let json = ops.run(&["installs", "show", id, "--json"]).await.json();
    assert_eq!(json["orgs"][0]["name"], name, "{json}");
}

#[tokio::test]
async fn a_wrong_or_missing_key_or_grant_is_a_clear_error_that_never_shows_the_key() {
    let ops = Ops::start().await;
    let url = format!("http://{}", ops.replica.addr);
    let wrong = "wrong-ops-key-0123456789-SECRET";

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("wrong.key");
    std::fs::write(&key_file, wrong).unwrap();
    let key_file = key_file.to_str().unwrap();
    let from_file = run(
        &[],
        &["installs", "list", "--url", &url, "--key-file", key_file],
    )
    .await;
    let stderr = from_file.failed(1);
    assert!(
        stderr.contains("ListInstalls")
            && stderr.contains(&format!("refused the key in --key-file {key_file}"))
            && stderr.contains("unknown key"),
        "{from_file:#?}"
    );
    assert!(!stderr.contains(wrong), "the key was shown: {from_file:#?}");

    let from_var = run(
        &[
            ("TOKEN_SERVICE_URL".into(), url.clone()),
            ("TOKEN_SERVICE_API_KEY".into(), wrong.into()),
        ],
        &["installs", "show", UNKNOWN],
    )
    .await;
    let stderr = from_var.failed(1);
    assert!(
        stderr.contains("refused the key in TOKEN_SERVICE_API_KEY"),
        "{from_var:#?}"
    );
    assert!(!stderr.contains(wrong), "the key was shown: {from_var:#?}");

    let none = run(&[("TOKEN_SERVICE_URL".into(), url)], &["installs", "list"]).await;
    assert_eq!(
        none.failed(2).trim(),
        "token-service installs list: no key: pass --key-file, set TOKEN_SERVICE_API_KEY, or give caller `ops` a key in TOKEN_SERVICE_CLIENT_KEYS"
    );

    // A caller with a key but without the grant.
    let denied = ops
        .run(&["installs", "list", "--caller", "projects-service"])
        .await;
    let stderr = denied.failed(1);
    assert!(
        stderr.contains("may not call ListInstalls")
            && stderr.contains("TOKEN_SERVICE_CALLER_RPCS"),
        "{denied:#?}"
    );
    assert!(!stderr.contains(PROJECTS_TOKEN_KEY), "{denied:#?}");
}

#[tokio::test]
async fn events_tail_replays_resumes_and_stops_after_count() {
    let ops = Ops::start().await;
    let first = ops.install().await;
    let second = ops.install().await;
    client(&ops.replica)
        .await
        .delete_install(pb::DeleteInstallRequest {
            install_id: first.install_id.clone(),
        })
        .await
        .expect("deleted");

    let tail = ops
        .run(&["events", "tail", "--from", "0", "--count", "3", "--json"])
        .await;
    let events: Vec<serde_json::Value> = tail
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["install_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("installed", first.install_id.as_str()),
            ("installed", second.install_id.as_str()),
            ("deleted", first.install_id.as_str()),
        ],
        "{tail:#?}"
    );
    assert_eq!(
        events[0]["org_ids"],
        serde_json::json!(org_ids(&first)),
        "{tail:#?}"
    );

    // Resuming after the second event gives exactly the third; for a person, one line.
    let after = events[1]["event_id"].as_str().unwrap();
    let resumed = ops
        .run(&["events", "tail", "--from", after, "--count", "1"])
        .await;
    let line = resumed.ok().trim_end();
    let third = events[2]["event_id"].as_str().unwrap();
    assert!(
        line.starts_with(&format!("{third}  "))
            && line.contains("  deleted ")
            && line.contains(&format!("install {}", first.install_id)),
        "{resumed:#?}"
    );
    assert_eq!(resumed.ok().lines().count(), 1, "{resumed:#?}");

    // Followed live: a tail waiting after the last event gets the next one when it happens.
    let waiting = {
        let env = ops.env.clone();
        let after = third.to_owned();
        tokio::spawn(async move {
            run(
                &env,
                &["events", "tail", "--from", &after, "--count", "1", "--json"],
            )
            .await
        })
    };
    let third_install = ops.install().await;
    let live = waiting.await.unwrap().json();
    assert_eq!(live["kind"], "installed");
    assert_eq!(live["install_id"], third_install.install_id.as_str());

    // A caller without the grant: a clear error.
    let denied = ops
        .run(&["events", "tail", "--from", "0", "--caller", "auth-service"])
        .await;
    let stderr = denied.failed(1);
    assert!(
        stderr.contains("may not call WatchInstallEvents"),
        "{denied:#?}"
    );
    let malformed = ops.run(&["events", "tail", "--from", "yesterday"]).await;
    assert!(malformed.failed(2).contains("event id"), "{malformed:#?}");
}
