//! The container deployment stays in step with the workspace (no Docker engine is needed): the
//! Dockerfile builds and ships every binary `cargo metadata` knows, docker-compose.yml runs each of
//! them with its own `healthcheck` subcommand, in the documented start order, and the Prometheus
//! targets are the ports the services listen on. `.ci/run` also runs `docker-compose config`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_norway::Value;

/// The image every app service of docker-compose.yml runs.
const IMAGE: &str = "snykapps:local";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(relative: &str) -> Value {
    let mut value: Value = serde_norway::from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{relative}: bad `<<` merge: {e}"));
    value
}

/// Every binary target of the workspace's packages: name → path of its `main`.
fn workspace_binaries() -> BTreeMap<String, PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let mut bins = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        for target in package["targets"].as_array().expect("targets") {
            let is_bin = target["kind"]
                .as_array()
                .expect("kind")
                .iter()
                .any(|k| k == "bin");
            if is_bin {
                bins.insert(
                    target["name"].as_str().expect("name").to_owned(),
                    PathBuf::from(target["src_path"].as_str().expect("src_path")),
                );
            }
        }
    }
    bins
}

/// The Dockerfile as logical instructions: comments dropped, `\` continuations joined.
fn dockerfile_instructions() -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continuation"
    );
    instructions
}

/// The Dockerfile's stages: name (or the image, for an unnamed stage) → its instructions, the
/// `FROM` first, in file order.
fn dockerfile_stages() -> Vec<(String, Vec<String>)> {
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for instruction in dockerfile_instructions() {
        if let Some(from) = instruction.strip_prefix("FROM ") {
            let words: Vec<&str> = from.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => words[0].to_owned(),
            };
            stages.push((name, Vec::new()));
        }
        if let Some((_, body)) = stages.last_mut() {
            body.push(instruction);
        }
    }
    stages
}

fn stage(name: &str) -> Vec<String> {
    dockerfile_stages()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("the Dockerfile has no stage {name}"))
        .1
}

/// The `--bin` names of the `cargo build` in the Dockerfile, and the names it copies out of
/// `target/release/`.
fn dockerfile_binaries() -> (BTreeSet<String>, BTreeSet<String>) {
    let instructions = dockerfile_instructions();
    let build: Vec<&String> = instructions
        .iter()
        .filter(|i| i.starts_with("RUN ") && i.contains("cargo build"))
        .collect();
    assert_eq!(build.len(), 1, "one RUN with `cargo build`: {build:#?}");
    let words: Vec<&str> = build[0].split_whitespace().collect();
    let bins = words
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_owned())
        .collect();
    let copied = words
        .iter()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect();
    (bins, copied)
}

/// Workspace binaries that are developer tools, deliberately not in the service image.
const NOT_IN_IMAGE: &[&str] = &["loadgen"];

#[test]
fn the_image_builds_and_ships_every_workspace_binary() {
    let workspace: BTreeSet<String> = workspace_binaries()
        .into_keys()
        .filter(|b| !NOT_IN_IMAGE.contains(&b.as_str()))
        .collect();
    for expected in [
        "auth-service",
        "token-service",
        "projects-service",
        "fake-snyk",
    ] {
        assert!(
            workspace.contains(expected),
            "cargo metadata lists no binary {expected}: {workspace:?}"
        );
    }
    let (built, copied) = dockerfile_binaries();
    assert_eq!(
        built, workspace,
        "the Dockerfile's `cargo build --bin …` list must name exactly the workspace's binaries"
    );
    assert_eq!(
        copied, workspace,
        "the Dockerfile must copy every built binary out of target/release/"
    );
    // The `prebuilt` target (engines without BuildKit) ships the same binaries.
    let prebuilt: BTreeSet<String> = stage("prebuilt")
        .iter()
        .filter(|i| i.starts_with("COPY "))
        .flat_map(|i| i.split_whitespace())
        .filter_map(|w| w.strip_prefix("bin/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        prebuilt, workspace,
        "the prebuilt target must copy every binary from bin/"
    );
}

#[test]
fn the_dockerfile_builds_locked_with_cached_dependencies_and_ships_a_slim_non_root_image() {
    let instructions = dockerfile_instructions();
    let build = instructions
        .iter()
        .find(|i| i.contains("cargo build"))
        .expect("a cargo build");
    for needed in [
        "--release",
        "--locked",
        "--mount=type=cache,target=/usr/local/cargo/registry",
        "--mount=type=cache,target=/usr/local/cargo/git",
        "--mount=type=cache,target=/app/target",
    ] {
        assert!(build.contains(needed), "`{needed}` missing from: {build}");
    }

    // The last stage is what ships by default; it and `prebuilt` (for engines without
    // BuildKit) differ only in where the binaries come from: both are `base` plus the binaries,
    // as uid 10001. `base` must come before `builder`: the legacy builder runs every stage before
    // its target.
    let stages = dockerfile_stages();
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["base", "prebuilt", "builder", "runtime"], "stages");
    for name in ["runtime", "prebuilt"] {
        let body = stage(name);
        assert_eq!(body[0], format!("FROM base AS {name}"));
        assert_eq!(
            body.last().map(String::as_str),
            Some("USER 10001:10001"),
            "{name}: {body:#?}"
        );
        assert!(
            body[1..body.len() - 1]
                .iter()
                .all(|i| i.starts_with("COPY ")),
            "{name} only adds the binaries to base: {body:#?}"
        );
    }
    let base = &stage("base");
    assert!(
        base[0].starts_with("FROM debian:bookworm-slim"),
        "{}",
        base[0]
    );
    let installed: Vec<&str> = base
        .iter()
        .filter(|i| i.starts_with("RUN "))
        .flat_map(|i| i.split("&&"))
        .filter_map(|cmd| cmd.trim().strip_prefix("apt-get install"))
        .flat_map(str::split_whitespace)
        .filter(|w| !w.starts_with('-'))
        .collect();
    assert_eq!(installed, ["ca-certificates"], "shipped packages");
    for instruction in base {
        for tool in ["curl", "wget"] {
            assert!(
                !instruction.split_whitespace().any(|w| w.contains(tool)),
                "the runtime image must not get {tool}: {instruction}"
            );
        }
    }
    assert!(
        !instructions.iter().any(|i| i.contains("protoc")),
        "the build must not need protoc (the proto crate uses protox)"
    );
}

fn services(compose: &Value) -> &serde_norway::Mapping {
    compose["services"].as_mapping().expect("services")
}

fn name(key: &Value) -> &str {
    key.as_str().expect("a service name")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("a list, got {value:?}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("a string, got {v:?}")))
        .collect()
}

fn env<'a>(service: &'a Value, var: &str) -> Option<&'a str> {
    service["environment"].get(var).map(|v| {
        v.as_str()
            .unwrap_or_else(|| panic!("{var} must be a string, got {v:?}"))
    })
}

/// `depends_on` as name → condition.
fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match service.get("depends_on") {
        None => BTreeMap::new(),
        Some(Value::Sequence(names)) => names
            .iter()
            .map(|n| (name(n).to_owned(), "service_started".to_owned()))
            .collect(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let extra: Vec<&str> = v
                    .as_mapping()
                    .expect("a depends_on entry")
                    .keys()
                    .map(name)
                    .filter(|key| *key != "condition")
                    .collect();
                assert!(
                    extra.is_empty(),
                    "depends_on.{}: {extra:?} is not understood by docker-compose 1.29",
                    name(k)
                );
                (
                    name(k).to_owned(),
                    v["condition"].as_str().expect("condition").to_owned(),
                )
            })
            .collect(),
        Some(other) => panic!("unexpected depends_on {other:?}"),
    }
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').expect("host:port").1
}

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

/// Grafana of the `observability` profile: the provisioned data source is the profile's
/// Prometheus, the dashboards it loads are the repository's files (read-only, at the path the
/// provider reads), the home dashboard is one of them, and nobody gets in without the password:
/// no anonymous access, no sign-up, no built-in `admin`/`admin` in real mode
/// (docs/operations.md, "Dashboard"). How the dashboard renders is not checked: the image cannot be pulled here.
#[test]
fn grafana_serves_the_repositorys_dashboard_over_the_profiles_prometheus_behind_a_password() {
    let compose = yaml("docker-compose.yml");
    let all = services(&compose);
    let grafana = &all["grafana"];
    assert_eq!(strings(&grafana["profiles"]), ["observability"]);
    assert_eq!(
        depends_on(grafana).keys().collect::<Vec<_>>(),
        ["prometheus"]
    );

    let source = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let urls: Vec<&str> = source["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .filter_map(|d| d["url"].as_str())
        .collect();
    assert_eq!(urls, ["http://prometheus:9090"]);
    assert_eq!(strings(&all["prometheus"]["profiles"]), ["observability"]);

    let provider = yaml("deploy/grafana/provisioning/dashboards/snykapps.yml");
    let loads = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("the provider's path");
    let volumes = strings(&grafana["volumes"]);
    for mount in [
        "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro".to_owned(),
        format!("./deploy/grafana/dashboards:{loads}:ro"),
    ] {
        assert!(
            volumes.contains(&mount.as_str()),
            "{mount} not in {volumes:?}"
        );
    }
    let home = env(grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH").expect("a home dashboard");
    let file = home
        .strip_prefix(&format!("{loads}/"))
        .unwrap_or_else(|| panic!("{home} is not under {loads}"));
    assert!(
        root()
            .join("deploy/grafana/dashboards")
            .join(file)
            .is_file(),
        "{home}: no such dashboard in deploy/grafana/dashboards"
    );

    assert_eq!(env(grafana, "GF_AUTH_ANONYMOUS_ENABLED"), Some("false"));
    assert_eq!(env(grafana, "GF_USERS_ALLOW_SIGN_UP"), Some("false"));
    assert_eq!(
        env(grafana, "GF_SECURITY_ADMIN_PASSWORD"),
        Some("${GRAFANA_ADMIN_PASSWORD:-demo-grafana-admin-not-secret}")
    );
    let real = yaml("compose.real.yml");
    assert_eq!(
        env(&services(&real)["grafana"], "GF_SECURITY_ADMIN_PASSWORD"),
        Some("${GRAFANA_ADMIN_PASSWORD-}"),
        "real mode has no fallback password"
    );
    let entrypoint = strings(&grafana["entrypoint"]).join(" ");
    assert!(
        entrypoint.contains(r#"[ -z "$$GF_SECURITY_ADMIN_PASSWORD" ]"#)
            && entrypoint.contains("exit 1"),
        "Grafana must refuse to start without a password: {entrypoint}"
    );
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

/// Every `${X:-default}` in `value`: (X, default).
fn compose_defaults(value: &str) -> Vec<(&str, &str)> {
    value
        .split("${")
        .skip(1)
        .filter_map(|rest| {
            let (inner, _) = rest.split_once('}')?;
            inner.split_once(":-")
        })
        .collect()
}

#[test]
fn the_shipped_demo_values_in_the_code_are_exactly_the_compose_demo_secrets() {
    use service_runtime::demo::{SHIPPED_VALUES, is_shipped};
    let compose = yaml("docker-compose.yml");
    let mut secret_defaults = Vec::new();
    for (key, service) in services(&compose) {
        let svc = name(key);
        let Some(environment) = service.get("environment").and_then(Value::as_mapping) else {
            continue;
        };
        for (var, value) in environment {
            for (inner, default) in compose_defaults(value.as_str().unwrap_or_default()) {
                // An empty fallback (an optional secret, such as a previous password during a
                // rotation) publishes nothing.
                if default.is_empty() {
                    continue;
                }
                if !NOT_SECRET.contains(&inner) || default.contains("demo") {
                    secret_defaults.push((svc, name(var), default));
                }
            }
        }
    }
    assert!(
        secret_defaults.len() >= 7,
        "the demo secrets of docker-compose.yml: {secret_defaults:?}"
    );
    // Every published secret is refused outside demo mode...
    for (svc, var, default) in &secret_defaults {
        assert!(
            is_shipped(default),
            "{svc}: {var} falls back to {default:?}, which service_runtime::demo::SHIPPED_VALUES \
             does not list: the services would accept it outside demo mode"
        );
    }
    // ...and the list names nothing the compose file no longer ships.
    for shipped in SHIPPED_VALUES {
        assert!(
            secret_defaults.iter().any(|(_, _, d)| d.contains(shipped)),
            "SHIPPED_VALUES lists {shipped:?}, which no docker-compose.yml default holds"
        );
    }
}

/// Settings whose demo default is harmless in real mode (real values come from .env).
const NOT_SECRET: &[&str] = &[
    "SNYK_API_URL",
    "SNYK_APP_URL",
    "SNYK_REDIRECT_URI",
    "SNYK_SCOPES",
    "RUST_LOG",
    "LOG_FORMAT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "AUTH_RATE_LIMIT_PER_MINUTE",
    "AUTH_TRUST_X_FORWARDED_FOR",
    "AUTH_SESSION_TTL_SECONDS",
];

#[test]
fn real_mode_drops_the_fake_turns_demo_mode_off_and_requires_every_secret() {
    let real = yaml("compose.real.yml");
    let all = services(&real);
    assert_eq!(strings(&all["fake-snyk"]["profiles"]), ["demo"]);
    let base = yaml("docker-compose.yml");
    for (key, service) in services(&base) {
        let svc = name(key);
        if service["image"].as_str() != Some(IMAGE) || svc == "fake-snyk" {
            continue;
        }
        assert_eq!(
            env(&all[svc], "DEMO_MODE"),
            Some("false"),
            "{svc} in compose.real.yml"
        );
        // Every setting with a demo default (`${X:-…}`) in the base file is, unless it is one of
        // the harmless ones, a secret: real mode must require it (`${X:?…}`), never fall back.
        for (var, value) in service["environment"].as_mapping().expect("environment") {
            let var = name(var);
            let value = value.as_str().unwrap_or_default();
            if value.contains(":-") && !NOT_SECRET.contains(&var) {
                let real_value = env(&all[svc], var)
                    .unwrap_or_else(|| panic!("{svc}: compose.real.yml must override {var}"));
                assert!(
                    real_value.contains(":?") && !real_value.contains("demo"),
                    "{svc}: {var} must be required in real mode, got {real_value}"
                );
            }
        }
    }

    // .env.example sets every variable that compose.real.yml requires, and selects it.
    let example = read(".env.example");
    let set: BTreeSet<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    assert!(
        example
            .lines()
            .any(|l| l == "COMPOSE_FILE=docker-compose.yml:compose.real.yml")
    );
    let text: String = read("compose.real.yml")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    for required in text.split("${").skip(1).filter_map(|rest| {
        let (var, rest) = rest.split_at(rest.find([':', '}'])?);
        rest.starts_with(":?").then_some(var)
    }) {
        assert!(
            set.contains(required),
            ".env.example must document {required}"
        );
    }
    for host in [
        "app.snyk.io",
        "api.snyk.io",
        "app.us.snyk.io",
        "api.us.snyk.io",
        "app.eu.snyk.io",
        "api.eu.snyk.io",
        "app.au.snyk.io",
        "api.au.snyk.io",
    ] {
        assert!(example.contains(host), ".env.example region table: {host}");
    }
}

#[test]
fn every_binary_in_the_image_has_a_healthcheck_subcommand() {
    let (in_image, _) = dockerfile_binaries();
    let sources = workspace_binaries();
    for binary in in_image {
        let main = sources
            .get(&binary)
            .unwrap_or_else(|| panic!("no source for {binary}"));
        let text = std::fs::read_to_string(main).expect("main.rs");
        assert!(
            text.contains("Some(\"healthcheck\")") && text.contains("healthcheck::"),
            "{}: `{binary} healthcheck` (service_runtime::healthcheck) is what compose runs; \
             the binary must handle it before it loads its settings",
            main.display()
        );
    }
}

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

/// The observability profile's containers are not on the services' network: each shares
/// networks with exactly the containers it scrapes, queries, receives from or exports to (read
/// from their configuration files), and with nothing else.
#[test]
fn observability_containers_reach_only_what_they_scrape_or_receive_from() {
    let compose = yaml("docker-compose.yml");
    let all = services(&compose);
    let networks = |svc: &str| -> BTreeSet<String> {
        all[svc].get("networks").map_or_else(
            || BTreeSet::from(["default".to_owned()]),
            |n| strings(n).into_iter().map(str::to_owned).collect(),
        )
    };
    let reach = |svc: &str| -> BTreeSet<String> {
        let mine = networks(svc);
        all.keys()
            .map(name)
            .filter(|other| *other != svc && !networks(other).is_disjoint(&mine))
            .map(str::to_owned)
            .collect()
    };
    let observability: Vec<&str> = all
        .iter()
        .filter(|(_, s)| {
            s.get("profiles")
                .is_some_and(|p| strings(p).contains(&"observability"))
        })
        .map(|(k, _)| name(k))
        .collect();
    assert!(observability.len() >= 4, "{observability:?}");

    // Who talks to whom, from the files that say so.
    let host = |endpoint: &str| -> String {
        let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
        rest.split([':', '/']).next().unwrap_or_default().to_owned()
    };
    let mut talks: BTreeSet<(String, String)> = BTreeSet::new();
    let prometheus = yaml("deploy/prometheus.yml");
    for job in prometheus["scrape_configs"].as_sequence().expect("jobs") {
        for sc in job["static_configs"].as_sequence().expect("static_configs") {
            for target in strings(&sc["targets"]) {
                talks.insert(("prometheus".into(), host(target)));
            }
        }
    }
    let source = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    for ds in source["datasources"].as_sequence().expect("datasources") {
        talks.insert(("grafana".into(), host(ds["url"].as_str().expect("url"))));
    }
    let collector = yaml("deploy/otel-collector.yaml");
    for (_, exporter) in collector["exporters"].as_mapping().expect("exporters") {
        if let Some(endpoint) = exporter.get("endpoint").and_then(Value::as_str) {
            let to = host(endpoint);
            // The Prometheus exporter listens (0.0.0.0:8889); the others send.
            if all.get(to.as_str()).is_some() {
                talks.insert(("otel-collector".into(), to));
            }
        }
    }
    for (key, service) in all {
        if env(service, "OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            talks.insert((name(key).to_owned(), "otel-collector".into()));
        }
    }

    for svc in observability {
        assert!(
            !networks(svc).contains("default"),
            "{svc} must not be on the services' network"
        );
        let expected: BTreeSet<String> = talks
            .iter()
            .filter_map(|(a, b)| {
                if a == svc {
                    Some(b.clone())
                } else if b == svc {
                    Some(a.clone())
                } else {
                    None
                }
            })
            .collect();
        assert!(!expected.is_empty(), "{svc} talks to nobody?");
        assert_eq!(reach(svc), expected, "{svc} reaches exactly its peers");
    }
}
