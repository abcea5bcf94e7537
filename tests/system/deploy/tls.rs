//! Real mode runs TLS on every internal hop, with certificates made at start.

use super::*;

/// `--flag value` of a command line.
fn flag<'a>(command: &[&'a str], flag: &str) -> &'a str {
    command
        .windows(2)
        .find(|w| w[0] == flag)
        .unwrap_or_else(|| panic!("{flag} missing from {command:?}"))[1]
}

/// The services that call an internal service, by the variable naming it, with the listening
/// variable of the service called: (caller, URL variable, CA variable, callee, listen variable).
const INTERNAL_HOPS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "projects-service",
        "TOKEN_SERVICE_URL",
        "TOKEN_SERVICE_CA_CERT",
        "token-service",
        "TOKEN_SERVICE_ADDR",
    ),
    (
        "auth-service",
        "TOKEN_SERVICE_URL",
        "TOKEN_SERVICE_CA_CERT",
        "token-service",
        "TOKEN_SERVICE_ADDR",
    ),
    (
        "auth-service",
        "PROJECTS_SERVICE_URL",
        "PROJECTS_SERVICE_CA_CERT",
        "projects-service",
        "PROJECTS_SERVICE_ADDR",
    ),
];

/// Real mode with no manual step: a one-shot `token-service certs` of our own image makes the
/// certificates into volumes before any service starts; each server mounts, read-only, the
/// volume with its own certificate and key and no other key; every internal URL is https to a
/// name the certificates hold, on the port the callee listens on, trusting the CA's certificate
/// from a volume the job writes; and the CA's key is mounted by the job only.
#[test]
fn real_mode_runs_tls_on_every_internal_hop_with_certificates_made_at_start() {
    let base = yaml("docker-compose.yml");
    let real = yaml("compose.real.yml");
    let (base_all, all) = (services(&base), services(&real));

    let job = &all["internal-certs"];
    assert_eq!(job["image"].as_str(), Some(IMAGE));
    assert!(job.get("profiles").is_none(), "runs in real mode always");
    assert_eq!(job["network_mode"].as_str(), Some("none"));
    assert_eq!(job["read_only"], Value::Bool(true));
    let command = strings(&job["command"]);
    assert_eq!(command[..2], ["token-service", "certs"]);
    let (dir, ca_dir) = (flag(&command, "--dir"), flag(&command, "--ca-dir"));
    assert!(
        !ca_dir.starts_with(dir),
        "the CA's key stays out of the services' folders"
    );
    let names: Vec<&str> = flag(&command, "--names").split(',').collect();
    // The job's volumes: mount path → volume.
    let job_volumes: BTreeMap<String, String> = strings(&job["volumes"])
        .into_iter()
        .map(|v| {
            let (volume, path) = v.split_once(':').expect("volume:path");
            assert!(!path.ends_with(":ro"), "the job writes {path}");
            assert!(
                real["volumes"].get(volume).is_some(),
                "{volume}: a named volume of compose.real.yml"
            );
            (path.to_owned(), volume.to_owned())
        })
        .collect();
    let volume_at = |path: &str| -> &str {
        job_volumes
            .get(path)
            .unwrap_or_else(|| panic!("internal-certs mounts no volume at {path}"))
    };
    let ca_volume = volume_at(ca_dir);
    let own_dir = |name: &str| format!("{dir}/{name}");
    // Every mount point exists in the image, owned by the services' user, so the new volumes
    // are writable by the job (Docker copies the directory's owner and mode into a new volume).
    let base_stage = stage("base").join("\n");
    for path in job_volumes.keys() {
        assert!(
            base_stage.contains("install -d -o 10001 -g 10001")
                && base_stage.split_whitespace().any(|w| w == path),
            "the image makes {path}, owned by 10001"
        );
    }

    for svc in [
        "token-service",
        "projects-service",
        "auth-service",
        "redis",
        "redis-auth",
    ] {
        let service = &all[svc];
        assert_eq!(
            depends_on(service)
                .get("internal-certs")
                .map(String::as_str),
            Some("service_completed_successfully"),
            "{svc} starts once the certificates are made"
        );
        // What it mounts of the job's volumes: read-only, never the CA's key, never another
        // server's key.
        let mounts: Vec<(String, String)> = strings(&service["volumes"])
            .into_iter()
            .filter_map(|v| {
                let (volume, rest) = v.split_once(':').expect("volume:path");
                job_volumes.values().any(|j| j == volume).then(|| {
                    let path = rest
                        .strip_suffix(":ro")
                        .unwrap_or_else(|| panic!("{svc}: {v} read-only"));
                    (volume.to_owned(), path.to_owned())
                })
            })
            .collect();
        assert!(!mounts.is_empty(), "{svc} mounts what the job made");
        for (volume, path) in &mounts {
            assert_ne!(volume, ca_volume, "{svc} must not see the CA's key");
            assert_eq!(
                volume_at(path),
                volume,
                "{svc}: {volume} where the job wrote it"
            );
            for other in names.iter().filter(|n| **n != svc) {
                assert_ne!(
                    volume,
                    volume_at(&own_dir(other)),
                    "{svc} must not see {other}'s key"
                );
            }
        }
        // Its CA file is a ca.pem the job wrote into a volume it mounts.
        let mounted = |file: &str| {
            mounts
                .iter()
                .any(|(_, path)| file.strip_prefix(path.as_str()) == Some("/ca.pem"))
        };
        for var in [
            "TOKEN_SERVICE_CA_CERT",
            "PROJECTS_SERVICE_CA_CERT",
            "REDIS_CA_CERT",
        ] {
            if let Some(file) = env(service, var) {
                assert!(mounted(file), "{svc}: {var}={file} is not in its volumes");
            }
        }
    }
    for (svc, prefix) in [
        ("token-service", "TOKEN_SERVICE"),
        ("projects-service", "PROJECTS_SERVICE"),
    ] {
        assert!(names.contains(&svc), "--names must hold {svc}: {names:?}");
        assert_eq!(
            env(&all[svc], &format!("{prefix}_TLS_CERT")),
            Some(format!("{}/cert.pem", own_dir(svc)).as_str())
        );
        assert_eq!(
            env(&all[svc], &format!("{prefix}_TLS_KEY")),
            Some(format!("{}/key.pem", own_dir(svc)).as_str())
        );
    }
    // Both Redis servers speak TLS only, with their own certificate, and their one client
    // connects with rediss:// trusting the CA.
    for (redis, client, var) in [
        ("redis", "token-service", "REDIS_URL"),
        ("redis-auth", "auth-service", "AUTH_REDIS_URL"),
    ] {
        assert!(
            names.contains(&redis),
            "--names must hold {redis}: {names:?}"
        );
        assert_eq!(
            env(&all[redis], "REDIS_TLS_DIR"),
            Some(own_dir(redis).as_str()),
            "{redis} serves TLS with its own certificate"
        );
        assert!(
            env(&all[client], var).is_some_and(|u| u.starts_with("rediss://")),
            "{client}: {var} is rediss://"
        );
        assert!(env(&all[client], "REDIS_CA_CERT").is_some(), "{client}");
    }
    // token-service's own healthcheck speaks TLS to localhost and must trust the CA.
    assert!(env(&all["token-service"], "TOKEN_SERVICE_CA_CERT").is_some());

    for (caller, url_var, ca_var, callee, listen_var) in INTERNAL_HOPS {
        let port = port_of(env(&base_all[*callee], listen_var).expect("listen address"));
        assert!(
            env(&base_all[*caller], url_var).is_some(),
            "{caller}: {url_var} in docker-compose.yml"
        );
        assert_eq!(
            env(&all[*caller], url_var),
            Some(format!("https://{callee}:{port}").as_str()),
            "{caller}: {url_var} must be https in real mode"
        );
        assert!(names.contains(callee), "--names must hold {callee}");
        assert!(env(&all[*caller], ca_var).is_some(), "{caller}: {ca_var}");
    }
    // No plain-text opt-out in the repository's own real mode.
    for (key, service) in all {
        assert_eq!(
            env(service, "INTERNAL_PLAINTEXT"),
            None,
            "{}: compose's real mode needs no mesh opt-out",
            name(key)
        );
    }
}
