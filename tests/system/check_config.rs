//! `check-config` of each service binary against start-up itself: the same settings refused with
//! the same message (and exit code 2 instead of 1), and accepted settings printed without their
//! secrets. The Kubernetes manifests are checked with it (tests/system/kubernetes.rs).

use std::process::Command;

use system_tests::process::binary;

/// Settings each service accepts in demo mode (published demo values, as in docker-compose.yml).
fn demo_env(service: &str) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![
        ("DEMO_MODE", "true"),
        ("SNYK_API_URL", "http://fake-snyk:8090"),
    ];
    env.extend(match service {
        "token-service" => vec![
            ("SNYK_CLIENT_ID", "demo-client-id"),
            ("SNYK_CLIENT_SECRET", "demo-client-secret"),
            (
                "TOKEN_ENCRYPTION_KEYS",
                "demo:ZGVtby1vbmx5LXRva2VuLWtleS1OT1QtQS1TRUNSRVQ=",
            ),
            ("TOKEN_SERVICE_CLIENT_KEYS", "ops=demo-ops-to-token-key-not-secret"),
            ("TOKEN_SERVICE_CALLER_RPCS", "ops=ListInstalls"),
        ],
        "projects-service" => vec![
            ("TOKEN_SERVICE_API_KEY", "demo-projects-to-token-key-not-secret"),
            (
                "PROJECTS_SERVICE_CLIENT_KEYS",
                "auth-service=demo-auth-to-projects-key-not-secret",
            ),
        ],
        _ => vec![
            ("SNYK_APP_URL", "http://localhost:8090"),
            ("SNYK_CLIENT_ID", "demo-client-id"),
            ("AUTH_REDIS_URL", "redis://auth-service@127.0.0.1:6380"),
            ("TOKEN_SERVICE_API_KEY", "demo-auth-to-token-key-not-secret"),
            ("PROJECTS_SERVICE_API_KEY", "demo-auth-to-projects-key-not-secret"),
            (
                "AUTH_COOKIE_KEY",
                "ZGVtby1vbmx5LWNvb2tpZS1rZXktaXQtaXMtaW4tZG9ja2VyLWNvbXBvc2UueW1sLXNvLU5PVC1BLVNFQ1JFVA==",
            ),
        ],
    });
    env
}

fn run(service: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(binary(service))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_what_starts_and_prints_no_secret() {
    for service in ["token-service", "projects-service", "auth-service"] {
        let env = demo_env(service);
        let (code, stdout, stderr) = run(service, &["check-config"], &env);
        assert_eq!(code, Some(0), "{service}: {stderr}");
        assert!(
            stdout.contains("Settings {"),
            "{service} prints its settings: {stdout}"
        );
        for (name, value) in &env {
            if is_secret(name) {
                let key = value
                    .rsplit(['=', ':'])
                    .find(|p| p.len() >= 12)
                    .unwrap_or(value);
                assert!(!stdout.contains(key), "{service} printed {name}: {stdout}");
            }
        }
    }
}

/// Whether `demo_env` gives this variable a secret.
fn is_secret(name: &str) -> bool {
    name.ends_with("SECRET") || name.ends_with("KEY") || name.ends_with("KEYS")
}

#[test]
fn check_config_reads_each_secret_from_its_file() {
    // As Kubernetes gives them (deploy/kubernetes): every secret a file of a mounted Secret, in a
    // temp dir here, named by `<NAME>_FILE`; none in the environment.
    for service in ["token-service", "projects-service", "auth-service"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env: Vec<(String, String)> = Vec::new();
        let mut files = Vec::new();
        for (name, value) in demo_env(service) {
            if is_secret(name) {
                let path = dir.path().join(name);
                std::fs::write(&path, format!("{value}\n")).expect("write the secret");
                env.push((format!("{name}_FILE"), path.display().to_string()));
                files.push((format!("{name}_FILE"), path, value));
            } else {
                env.push((name.to_owned(), value.to_owned()));
            }
        }
        assert!(!files.is_empty(), "{service} reads no secret");
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (code, stdout, stderr) = run(service, &["check-config"], &pairs);
        assert_eq!(code, Some(0), "{service}: {stderr}");
        for (_, _, value) in &files {
            let key = value
                .rsplit(['=', ':'])
                .find(|p| p.len() >= 12)
                .unwrap_or(value);
            assert!(
                !stdout.contains(key),
                "{service} printed a secret: {stdout}"
            );
        }
        // A file the Secret does not hold: refused naming the variable, never the contents.
        for (var, path, _) in &files {
            let moved = path.with_extension("moved");
            std::fs::rename(path, &moved).expect("move the file away");
            let (code, _, stderr) = run(service, &["check-config"], &pairs);
            assert_eq!(
                code,
                Some(2),
                "{service} without the file of {var}: {stderr}"
            );
            assert!(stderr.contains(var.as_str()), "{service}: {stderr}");
            std::fs::rename(&moved, path).expect("put the file back");
        }
    }
}

#[test]
fn check_config_refuses_with_start_ups_message_and_exit_code_2() {
    for service in ["token-service", "projects-service", "auth-service"] {
        // Demo mode against Snyk itself: refused before anything is reached.
        let mut env = demo_env(service);
        env.retain(|(k, _)| !k.starts_with("SNYK_A"));
        env.push(("SNYK_API_URL", "https://api.snyk.io"));
        env.push(("SNYK_APP_URL", "https://app.snyk.io"));
        let (code, stdout, checked) = run(service, &["check-config"], &env);
        assert_eq!(code, Some(2), "{service}: {checked}");
        assert!(
            stdout.is_empty(),
            "{service}: nothing on stdout when refused"
        );
        assert!(checked.contains("DEMO_MODE"), "{service}: {checked}");
        let (code, _, started) = run(service, &[], &env);
        assert_eq!(code, Some(1), "{service} started: {started}");
        let line = checked.trim();
        assert!(
            started.lines().any(|l| l.trim() == line),
            "{service}: start-up said {started:?}, check-config said {line:?}"
        );
    }
}
