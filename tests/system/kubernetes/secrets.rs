//! Secrets in the manifests: each lives only in a Secret, each a Deployment drops is named by
//! its binary's `check-config`, and the production Deployments pass `check-config` with the
//! secrets the documentation lists.

use super::*;

/// The variables that hold a secret: only ever from a Secret (by reference, or as a file of one).
const SECRET_VARS: &[&str] = &[
    "SNYK_CLIENT_SECRET",
    "TOKEN_ENCRYPTION_KEYS",
    "TOKEN_SERVICE_CLIENT_KEYS",
    "PROJECTS_SERVICE_CLIENT_KEYS",
    "TOKEN_SERVICE_API_KEY",
    "PROJECTS_SERVICE_API_KEY",
    "AUTH_COOKIE_KEY",
    "REDIS_PASSWORD",
    "AUTH_REDIS_PASSWORD",
    "FAKE_SNYK_CLIENT_SECRET",
];

/// Each Redis URL variable and the file of its password. The binaries accept a URL without a
/// password (a Redis without AUTH), so a dropped password file is nothing `check-config` can
/// see: the manifests must give one with every URL that names a user.
const REDIS_PASSWORD_FILES: &[(&str, &str)] = &[
    ("REDIS_URL", "REDIS_PASSWORD_FILE"),
    ("AUTH_REDIS_URL", "AUTH_REDIS_PASSWORD_FILE"),
];

#[test]
fn kubernetes_check_config_names_each_secret_a_manifest_drops() {
    let objects = overlay("demo");
    for (name, pod, container) in service_containers(&objects) {
        let root = tempfile::tempdir().expect("temp dir");
        let env = container_env(&objects, pod, container, root.path(), true);
        assert!(
            env.secrets.keys().any(|v| v.ends_with("_FILE")),
            "{name} reads no secret from a file"
        );
        for dropped in env.secrets.keys() {
            let fail = |vars: &BTreeMap<String, String>, how: &str| {
                let (code, _, stderr) = check_config(&name, vars);
                assert_eq!(code, Some(2), "{name} started {how}");
                assert!(stderr.contains(dropped.as_str()), "{name} {how}: {stderr}");
            };
            if dropped.ends_with("_FILE") {
                // The Secret lacks the key: the file is not there.
                let path = &env.vars[dropped];
                let moved = format!("{path}.moved");
                std::fs::rename(path, &moved).expect("move the file away");
                fail(&env.vars, &format!("without the file of {dropped}"));
                std::fs::rename(&moved, path).expect("put the file back");
                if REDIS_PASSWORD_FILES.iter().any(|(_, f)| f == dropped) {
                    continue;
                }
            }
            // The manifest lacks the variable.
            let mut vars = env.vars.clone();
            vars.remove(dropped);
            fail(&vars, &format!("without {dropped}"));
        }
        for (url, file) in REDIS_PASSWORD_FILES {
            if let Some(value) = env.vars.get(*url) {
                let names_user = value.split_once("://").is_some_and(|(_, rest)| {
                    rest.split('/').next().is_some_and(|a| a.contains('@'))
                });
                assert!(
                    !names_user || env.secrets.contains_key(*file),
                    "{name}: {url} names a user and no {file} gives its password"
                );
            }
        }
    }
}

#[test]
fn kubernetes_secrets_live_only_in_secrets() {
    for (variant, objects) in variants() {
        // Settings name no secret variable (only its `<NAME>_FILE`, checked below to be a file of
        // a mounted Secret) and no URL carries a password.
        for map in of_kind(&objects, "ConfigMap") {
            for (key, value) in map["data"].as_object().into_iter().flatten() {
                let at = format!("{variant}: ConfigMap {} {key}", map["metadata"]["name"]);
                assert!(
                    !SECRET_VARS.contains(&key.as_str()),
                    "{at} is a secret: mount it from a Secret and set {key}_FILE"
                );
                let value = str_of(value);
                if let Some((_, rest)) = value.split_once("://") {
                    let userinfo = rest.split(['/', '@']).next().filter(|_| rest.contains('@'));
                    assert!(
                        !userinfo.is_some_and(|u| u.contains(':')),
                        "{at} holds a password in its URL"
                    );
                }
            }
        }
        for (workload, pod) in pod_specs(&objects) {
            for container in array(&pod["containers"]) {
                // Our services take every secret as a file, none in their environment (which
                // every child process inherits); others (Redis, the fake) by reference.
                let ours = SERVICES.contains(&str_of(&container["command"][0]));
                for var in array(&container["env"]) {
                    let name = str_of(&var["name"]);
                    if SECRET_VARS.contains(&name) {
                        assert!(
                            !ours,
                            "{variant}: {workload} takes {name} in its environment: mount it and set {name}_FILE"
                        );
                        assert!(
                            var["valueFrom"]["secretKeyRef"].is_object(),
                            "{variant}: {workload} {name} must come from a Secret"
                        );
                    }
                }
                if ours {
                    assert!(
                        array(&container["envFrom"])
                            .iter()
                            .all(|source| source["secretRef"].is_null()),
                        "{variant}: {workload} takes a whole Secret into its environment"
                    );
                }
                // Each `<secret>_FILE` names a file of a Secret the container mounts (and, where
                // the overlay makes the Secret, one of its keys).
                for (name, path) in configured_vars(&objects, container) {
                    let Some(secret_var) = name.strip_suffix("_FILE") else {
                        continue;
                    };
                    if !SECRET_VARS.contains(&secret_var) {
                        continue;
                    }
                    let (secret, key) =
                        secret_file_of(pod, container, &path).unwrap_or_else(|| {
                            panic!(
                                "{variant}: {workload} {name}={path} is no file of a mounted Secret"
                            )
                        });
                    let data = referenced_data(&objects, "Secret", secret, false);
                    assert!(
                        data.is_empty() || data.contains_key(key),
                        "{variant}: {workload} {name}: Secret {secret} has no key {key}"
                    );
                }
            }
        }
        // And no value of a Secret appears in any other object (annotations, args, scripts).
        let secrets: Vec<(String, String)> = of_kind(&objects, "Secret")
            .into_iter()
            .flat_map(|s| {
                let name = str_of(&s["metadata"]["name"]).to_owned();
                config_data(&objects, "Secret", &name)
                    .into_iter()
                    .filter(|(key, _)| SECRET_VARS.contains(&key.as_str()))
                    .map(move |(key, value)| (format!("{name}/{key}"), value))
            })
            .collect();
        if variant == "demo" {
            assert!(secrets.len() >= 10, "demo Secrets: {secrets:?}");
        }
        for object in objects.iter().filter(|o| o["kind"] != "Secret") {
            let text = object.to_string();
            for (key, value) in &secrets {
                for part in secret_parts(value) {
                    assert!(
                        !text.contains(&part),
                        "{variant}: the value of Secret {key} appears in {} {}",
                        object["kind"],
                        object["metadata"]["name"]
                    );
                }
            }
        }
    }
}

/// The Secrets the production overlay expects the operator to create (docs/operations.md, "Kubernetes"):
/// name and keys. The test below makes them with fresh values and checks every reference of the
/// manifests resolves into them, and that docs/operations.md names each key.
const PRODUCTION_SECRETS: &[(&str, &[&str])] = &[
    (
        "token-service-secrets",
        &[
            "SNYK_CLIENT_SECRET",
            "TOKEN_ENCRYPTION_KEYS",
            "TOKEN_SERVICE_CLIENT_KEYS",
            "REDIS_PASSWORD",
        ],
    ),
    (
        "projects-service-secrets",
        &["TOKEN_SERVICE_API_KEY", "PROJECTS_SERVICE_CLIENT_KEYS"],
    ),
    (
        "auth-service-secrets",
        &[
            "TOKEN_SERVICE_API_KEY",
            "PROJECTS_SERVICE_API_KEY",
            "AUTH_COOKIE_KEY",
            "AUTH_REDIS_PASSWORD",
        ],
    ),
    ("redis-ca", &["ca.crt"]),
    ("token-service-tls", &["tls.crt", "tls.key", "ca.crt"]),
    ("projects-service-tls", &["tls.crt", "tls.key", "ca.crt"]),
];

/// A fresh random value of `bytes` bytes, base64.
fn random_base64(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// What an operator puts into each key of [`PRODUCTION_SECRETS`].
fn production_secret_value(key: &str, certs: &test_support::Certificates) -> String {
    let file = |p: &str| std::fs::read_to_string(p).expect("certificate file");
    let token = || format!("k{}", rand::random::<u128>());
    match key {
        "TOKEN_ENCRYPTION_KEYS" => format!("k1:{}", random_base64(32)),
        "AUTH_COOKIE_KEY" => random_base64(64),
        "TOKEN_SERVICE_CLIENT_KEYS" => format!(
            "projects-service={},auth-service={},ops={}",
            token(),
            token(),
            token()
        ),
        "PROJECTS_SERVICE_CLIENT_KEYS" => format!("auth-service={}", token()),
        "ca.crt" => file(&certs.ca),
        "tls.crt" => file(&certs.cert),
        "tls.key" => file(&certs.key),
        _ => token(),
    }
}

#[test]
fn kubernetes_production_deployments_pass_check_config_with_the_documented_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = test_support::certificates_for(dir.path(), &["token-service", "projects-service"]);
    let readme = std::fs::read_to_string(kubernetes_dir().join("../../docs/operations.md"))
        .expect("docs/operations.md");
    let mut objects = overlay("production");
    for (name, keys) in PRODUCTION_SECRETS {
        let row = readme
            .lines()
            .find(|l| {
                l.split('|')
                    .nth(1)
                    .is_some_and(|cell| cell.contains(&format!("`{name}`")))
            })
            .unwrap_or_else(|| panic!("docs/operations.md lists no Secret {name}"));
        let mut data = serde_json::Map::new();
        for key in *keys {
            assert!(
                row.contains(&format!("`{key}`")),
                "docs/operations.md's {name} row lacks {key}"
            );
            let value = production_secret_value(key, &certs);
            data.insert(
                (*key).to_owned(),
                base64::engine::general_purpose::STANDARD
                    .encode(value)
                    .into(),
            );
        }
        objects.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data,
        }));
    }
    for (name, pod, container) in service_containers(&objects) {
        let root = tempfile::tempdir().expect("temp dir");
        // Strict: every Secret and key the manifest references is one of the documented ones.
        let env = container_env(&objects, pod, container, root.path(), true);
        let (code, _, stderr) = check_config(&name, &env.vars);
        assert_eq!(
            code,
            Some(0),
            "production {name} check-config refused: {stderr}"
        );
        assert!(
            !env.vars.contains_key("DEMO_MODE"),
            "production {name} in demo mode"
        );
    }
}
