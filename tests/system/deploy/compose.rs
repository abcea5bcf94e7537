//! docker-compose.yml: every app service runs an image binary with its own healthcheck, starts
//! in dependency order, reaches the others by name on the ports they listen on, and publishes
//! ports on this machine only.

use super::*;

#[test]
fn every_compose_app_service_runs_an_image_binary_with_its_own_healthcheck() {
    let compose = yaml("docker-compose.yml");
    assert!(
        compose.get("name").is_none() && compose.get("version").is_none(),
        "no top-level `name:` (docker-compose 1.29) and no obsolete `version:`"
    );
    let (in_image, _) = dockerfile_binaries();

    let builders: Vec<&str> = services(&compose)
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(k, _)| name(k))
        .collect();
    assert_eq!(
        builders.len(),
        1,
        "one service builds the image: {builders:?}"
    );
    let builder = &services(&compose)[builders[0]];
    assert_eq!(builder["image"].as_str(), Some(IMAGE));
    assert!(
        builder.get("profiles").is_none(),
        "the service that builds the image must run in every mode"
    );

    let mut run = BTreeSet::new();
    for (key, service) in services(&compose) {
        let svc = name(key);
        let healthcheck = || {
            strings(
                service
                    .get("healthcheck")
                    .and_then(|h| h.get("test"))
                    .unwrap_or_else(|| panic!("{svc} has no healthcheck")),
            )
        };
        if svc == "redis" || svc == "redis-auth" {
            // The default user is off: the service's own user must get PONG.
            let test = healthcheck().join(" ");
            assert!(
                test.contains("redis-cli ")
                    && test.contains(" --user \"$$REDIS_USER\" ping")
                    && test.contains("grep -q PONG"),
                "{svc}: {test}"
            );
        }
        if service["image"].as_str() != Some(IMAGE) {
            continue;
        }
        let command = strings(&service["command"]);
        let binary = command[0];
        assert!(
            in_image.contains(binary),
            "{svc} runs {binary:?}, which the image does not ship ({in_image:?})"
        );
        assert_eq!(
            healthcheck(),
            ["CMD", binary, "healthcheck"],
            "{svc} must be checked by its own binary's `healthcheck` subcommand (no curl in the image)"
        );
        assert_eq!(env(service, "DEMO_MODE"), Some("true"), "{svc}: DEMO_MODE");
        run.insert(binary.to_owned());
    }
    assert_eq!(
        run, in_image,
        "every binary of the image runs as a compose service"
    );
}

#[test]
fn compose_starts_services_in_dependency_order_and_nothing_waits_for_the_fake() {
    let compose = yaml("docker-compose.yml");
    let all = services(&compose);
    let deps = |svc: &str| depends_on(&all[svc]);
    let healthy = |names: &[&str]| -> BTreeMap<String, String> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), "service_healthy".to_owned()))
            .collect()
    };
    assert_eq!(deps("token-service"), healthy(&["redis"]));
    assert_eq!(deps("projects-service"), healthy(&["token-service"]));
    assert_eq!(
        deps("auth-service"),
        healthy(&["redis-auth", "token-service", "projects-service"]),
        "auth-service keeps its browser state in a Redis of its own, not the grants'"
    );
    for (key, service) in all {
        let svc = name(key);
        for dep in depends_on(service).keys() {
            assert_ne!(dep, "fake-snyk", "{svc} must not depend on fake-snyk");
            let target = all
                .get(dep.as_str())
                .unwrap_or_else(|| panic!("{svc} depends on unknown {dep}"));
            if service.get("profiles").is_none() {
                assert!(
                    target.get("profiles").is_none(),
                    "{svc} (always on) depends on {dep}, which only runs in a profile"
                );
            }
        }
    }

    // Redis keeps its data: AOF fsynced before every answer (a rotated pair survives a host
    // crash), a named volume.
    let redis = strings(&all["redis"]["command"]).join(" ");
    assert!(
        redis.contains("--appendonly yes") && redis.contains("--appendfsync always"),
        "{redis}"
    );
    assert!(
        strings(&all["redis"]["volumes"])
            .iter()
            .any(|v| v.ends_with(":/data"))
    );
    // The grants are never evicted: a full Redis refuses writes instead.
    assert!(redis.contains("--maxmemory-policy noeviction"), "{redis}");

    // auth-service's own Redis: small, evicting, no persistence, not published; auth-service
    // uses it and not the grants' Redis.
    let redis_auth = strings(&all["redis-auth"]["command"]).join(" ");
    for flag in ["--maxmemory 32mb", "--maxmemory-policy allkeys-lru"] {
        assert!(
            redis_auth.contains(flag),
            "redis-auth: {flag} in {redis_auth}"
        );
    }
    assert_eq!(all["redis-auth"]["image"], all["redis"]["image"]);
    assert!(
        all["redis-auth"].get("ports").is_none(),
        "redis-auth is not published"
    );
    assert!(
        all["redis"].get("ports").is_none(),
        "redis is not published"
    );
    assert!(
        env(&all["auth-service"], "AUTH_REDIS_URL").is_some_and(|u| {
            u.starts_with("redis://auth-service:${AUTH_SERVICE_REDIS_PASSWORD:-")
                && u.ends_with("@redis-auth:6379")
        }),
        "auth-service signs in to redis-auth as its own user"
    );
    assert!(
        env(&all["token-service"], "REDIS_URL").is_some_and(|u| {
            u.starts_with("redis://token-service:${TOKEN_SERVICE_REDIS_PASSWORD:-")
                && u.ends_with("@redis:6379")
        }),
        "token-service signs in to redis as its own user"
    );
    // Each Redis loads the repository's ACL file for its service's user.
    for (redis, acl, user) in [
        ("redis", "redis.acl", "token-service"),
        ("redis-auth", "redis-auth.acl", "auth-service"),
    ] {
        let volumes = strings(&all[redis]["volumes"]).join(" ");
        assert!(
            volumes.contains(&format!("./deploy/redis/{acl}:/etc/redis/users.acl.in:ro")),
            "{redis}: {volumes}"
        );
        assert_eq!(env(&all[redis], "REDIS_USER"), Some(user), "{redis}");
        let acl = read(&format!("deploy/redis/{acl}"));
        assert!(
            acl.lines()
                .any(|l| l.starts_with(&format!("user {user} on >@PASSWORD@ "))),
            "{acl}"
        );
        assert!(
            acl.lines().any(|l| l.starts_with("user default off ")),
            "{acl}"
        );
    }
    assert_eq!(
        env(&all["auth-service"], "REDIS_URL"),
        None,
        "auth-service must not reach the grants' Redis"
    );

    // Each Redis shares an internal network with its one client and nothing else.
    let networks = |svc: &str| -> BTreeSet<&str> {
        all[svc].get("networks").map_or_else(
            || BTreeSet::from(["default"]),
            |n| strings(n).into_iter().collect(),
        )
    };
    for (redis, network, client) in [
        ("redis", "grants", "token-service"),
        ("redis-auth", "auth-state", "auth-service"),
    ] {
        assert_eq!(networks(redis), BTreeSet::from([network]), "{redis}");
        assert_eq!(
            compose["networks"][network]["internal"],
            Value::Bool(true),
            "{network}"
        );
        for (key, _) in all {
            let svc = name(key);
            assert_eq!(
                networks(svc).contains(network),
                svc == redis || svc == client,
                "only {client} reaches {redis} (network {network}); {svc}"
            );
        }
    }
}

#[test]
fn compose_wires_services_by_name_on_the_ports_they_listen_on() {
    let compose = yaml("docker-compose.yml");
    let all = services(&compose);
    let listen = |svc: &str, var: &str| -> String {
        let addr = env(&all[svc], var).unwrap_or_else(|| panic!("{svc}: {var}"));
        assert!(
            addr.starts_with("0.0.0.0:"),
            "{svc}: {var}={addr} must listen on every interface of the container"
        );
        port_of(addr).to_owned()
    };
    let token = listen("token-service", "TOKEN_SERVICE_ADDR");
    let token_metrics = listen("token-service", "TOKEN_SERVICE_METRICS_ADDR");
    let projects = listen("projects-service", "PROJECTS_SERVICE_ADDR");
    let projects_metrics = listen("projects-service", "PROJECTS_SERVICE_METRICS_ADDR");
    assert_ne!(
        projects, projects_metrics,
        "projects-service's /metrics has a plain port of its own (the API is HTTPS in real mode)"
    );
    let auth = listen("auth-service", "AUTH_SERVICE_ADDR");
    let auth_metrics = listen("auth-service", "AUTH_SERVICE_METRICS_ADDR");
    assert_ne!(
        auth, auth_metrics,
        "auth-service's /metrics has a port of its own"
    );
    let fake = listen("fake-snyk", "FAKE_SNYK_ADDR");

    let token_url = format!("http://token-service:{token}");
    for svc in ["projects-service", "auth-service"] {
        assert_eq!(
            env(&all[svc], "TOKEN_SERVICE_URL"),
            Some(token_url.as_str()),
            "{svc}"
        );
    }
    assert_eq!(
        env(&all["auth-service"], "PROJECTS_SERVICE_URL"),
        Some(format!("http://projects-service:{projects}").as_str())
    );
    // The services reach the fake by name; the browser reaches its consent page on localhost.
    let fake_api = format!("${{SNYK_API_URL:-http://fake-snyk:{fake}}}");
    for svc in ["token-service", "projects-service"] {
        assert_eq!(
            env(&all[svc], "SNYK_API_URL"),
            Some(fake_api.as_str()),
            "{svc}"
        );
    }
    assert_eq!(
        env(&all["auth-service"], "SNYK_APP_URL"),
        Some(format!("${{SNYK_APP_URL:-http://localhost:{fake}}}").as_str())
    );
    assert_eq!(
        strings(&all["fake-snyk"]["ports"]),
        [format!("127.0.0.1:{fake}:{fake}")]
    );
    assert_eq!(
        strings(&all["auth-service"]["ports"]),
        [format!(
            "${{AUTH_SERVICE_PUBLISH:-127.0.0.1}}:{auth}:{auth}"
        )]
    );
    assert_eq!(
        env(&all["fake-snyk"], "FAKE_SNYK_REDIRECT_URIS"),
        env(&all["auth-service"], "SNYK_REDIRECT_URI"),
        "the fake must accept auth-service's redirect URI"
    );

    for svc in ["auth-service", "token-service", "projects-service"] {
        assert_eq!(env(&all[svc], "OTEL_SERVICE_NAME"), Some(svc));
        assert_eq!(
            env(&all[svc], "OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("${OTEL_EXPORTER_OTLP_ENDPOINT:-}"),
            "{svc}"
        );
    }

    // Prometheus scrapes each service's /metrics where it is served.
    let prometheus = yaml("deploy/prometheus.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().expect("static_configs"))
        .flat_map(|sc| strings(&sc["targets"]))
        .map(str::to_owned)
        .collect();
    for expected in [
        format!("auth-service:{auth_metrics}"),
        format!("projects-service:{projects_metrics}"),
        format!("token-service:{token_metrics}"),
    ] {
        assert!(targets.contains(&expected), "{expected} not in {targets:?}");
    }
    for target in &targets {
        let host = target.split(':').next().unwrap_or_default();
        assert!(
            all.get(host).is_some(),
            "prometheus scrapes unknown {target}"
        );
    }

    // The observability profile: collector → Jaeger, and a Prometheus exporter endpoint.
    for svc in ["otel-collector", "jaeger", "prometheus"] {
        assert_eq!(
            strings(&all[svc]["profiles"]),
            ["observability"],
            "{svc} profile"
        );
    }
    let collector = yaml("deploy/otel-collector.yaml");
    let pipelines = &collector["service"]["pipelines"];
    assert_eq!(strings(&pipelines["traces"]["exporters"]), ["otlp/jaeger"]);
    assert_eq!(strings(&pipelines["metrics"]["exporters"]), ["prometheus"]);
    assert_eq!(
        collector["exporters"]["otlp/jaeger"]["endpoint"].as_str(),
        Some("jaeger:4317")
    );
    assert!(targets.contains(&format!(
        "otel-collector:{}",
        port_of(
            collector["exporters"]["prometheus"]["endpoint"]
                .as_str()
                .expect("prometheus exporter endpoint")
        )
    )));
}

#[test]
fn compose_publishes_ports_on_this_machine_only() {
    let compose = yaml("docker-compose.yml");
    let mut published = 0;
    for (key, service) in services(&compose) {
        let svc = name(key);
        let Some(ports) = service.get("ports") else {
            continue;
        };
        for port in strings(ports) {
            published += 1;
            // auth-service alone may be opened to the network, and only on request.
            let host = if svc == "auth-service" {
                "${AUTH_SERVICE_PUBLISH:-127.0.0.1}:"
            } else {
                "127.0.0.1:"
            };
            assert!(
                port.starts_with(host),
                "{svc}: {port} must be published on {host}"
            );
        }
    }
    assert!(published >= 2, "auth-service and fake-snyk are published");
    assert!(
        read("docs/operations.md").contains("AUTH_SERVICE_PUBLISH"),
        "docs/operations.md tells how to open 8080 to the network"
    );
}
