//! The Kubernetes manifests (deploy/kubernetes) checked without a cluster: each overlay and
//! optional component renders with `kubectl kustomize` and validates `--strict` against the API
//! schemas of the oldest and newest supported Kubernetes (`kubernetes-validate`, offline); each
//! Deployment's container, with the environment and files its manifest gives it, passes the real
//! binary's `check-config`; probes, ports and commands name what the binaries serve; the
//! NetworkPolicies allow exactly the architecture's edges; no secret is outside a Secret.
//! `.ci/run` installs kubectl and kubernetes-validate when missing.

mod manifests;
mod secrets;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use base64::Engine as _;
use manifests::*;
use system_tests::process::binary;

/// The Kubernetes minor versions validated against: the oldest still supported upstream (with
/// the managed clouds' extended support) and every one up to the newest.
const KUBERNETES_VERSIONS: &[&str] = &["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"];

/// Custom resources of operators the schemas do not know; validated by their shape in
/// `kubernetes_optional_components_render_what_they_promise` instead.
const CUSTOM_KINDS: &[&str] = &["Certificate", "Issuer", "ServiceMonitor"];

/// Runs `<binary> check-config` with exactly `vars`.
fn check_config(
    binary_name: &str,
    vars: &BTreeMap<String, String>,
) -> (Option<i32>, String, String) {
    let out = Command::new(binary(binary_name))
        .arg("check-config")
        .env_clear()
        .envs(vars)
        .output()
        .expect("binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The port of a `host:port` setting.
fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} is not host:port"))
}

/// What each binary serves, from its own settings: (main port, metrics port if separate).
fn served_ports(name: &str, vars: &BTreeMap<String, String>) -> (u16, Option<u16>) {
    let var = |k: &str| port_of(vars.get(k).unwrap_or_else(|| panic!("{name}: {k} unset")));
    match name {
        "token-service" => (
            var("TOKEN_SERVICE_ADDR"),
            Some(var("TOKEN_SERVICE_METRICS_ADDR")),
        ),
        "projects-service" => (var("PROJECTS_SERVICE_ADDR"), None),
        "auth-service" => (
            var("AUTH_SERVICE_ADDR"),
            Some(var("AUTH_SERVICE_METRICS_ADDR")),
        ),
        other => panic!("unknown service {other}"),
    }
}

/// The architecture's edges: pod to pod (both sides), and each pod's way out.
fn expected_edges(variant: &str) -> BTreeSet<String> {
    let mut pods = vec![
        ("auth-service", "token-service", 50051),
        ("projects-service", "token-service", 50051),
        ("auth-service", "projects-service", 8081),
    ];
    let mut edges: BTreeSet<String> = [
        "deny-all [\"Ingress\",\"Egress\"]",
        "in: * -> auth-service:8080/TCP",
        "in: */prometheus -> token-service:9464/TCP",
        "in: */prometheus -> projects-service:8081/TCP",
        "in: */prometheus -> auth-service:9465/TCP",
        "out: token-service -> 0.0.0.0/0-private:443/TCP",
        "out: projects-service -> 0.0.0.0/0-private:443/TCP",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for service in SERVICES {
        for protocol in ["UDP", "TCP"] {
            edges.insert(format!(
                "out: {service} -> kube-system/kube-dns:53/{protocol}"
            ));
        }
    }
    if variant == "demo" {
        pods.extend([
            ("token-service", "redis", 6379),
            ("auth-service", "redis-auth", 6379),
            ("token-service", "fake-snyk", 8090),
            ("projects-service", "fake-snyk", 8090),
        ]);
    } else {
        edges.insert("out: token-service -> 0.0.0.0/0:6379/TCP".to_owned());
        edges.insert("out: auth-service -> 0.0.0.0/0:6379/TCP".to_owned());
    }
    for (from, to, port) in pods {
        edges.insert(format!("in: {from} -> {to}:{port}/TCP"));
        edges.insert(format!("out: {from} -> {to}:{port}/TCP"));
    }
    edges
}

/// The pieces of a secret value worth searching for: each key of a `name=key,…` list, each key
/// of a `id:key` ring, the whole.
fn secret_parts(value: &str) -> Vec<String> {
    let mut parts = vec![value.to_owned()];
    for item in value.split(',') {
        for piece in [item, item.rsplit_once('=').map_or(item, |(_, k)| k)] {
            let piece = piece.rsplit_once(':').map_or(piece, |(_, k)| k);
            parts.push(piece.trim_end_matches('=').to_owned());
        }
    }
    parts.retain(|p| p.len() >= 12);
    parts
}

#[test]
fn kubernetes_overlays_and_components_validate_against_the_api_schemas() {
    for (variant, objects) in variants() {
        assert!(!objects.is_empty(), "{variant} rendered nothing");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            if CUSTOM_KINDS.contains(&str_of(&object["kind"])) {
                continue;
            }
            let path = dir.path().join(format!("{i}.yaml"));
            // JSON, a subset of YAML that no reader takes `yes` in as a boolean.
            std::fs::write(&path, object.to_string()).expect("write");
            files.push(path);
        }
        for version in KUBERNETES_VERSIONS {
            let out = Command::new("kubernetes-validate")
                .args(["--strict", "--quiet", "--no-warn", "-k", version])
                .args(&files)
                .output()
                .expect("kubernetes-validate runs (.ci/run installs it: pip install kubernetes-validate)");
            assert!(
                out.status.success(),
                "{variant} does not validate against Kubernetes {version}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn kubernetes_demo_deployments_pass_check_config_of_their_binary() {
    let objects = overlay("demo");
    let containers = service_containers(&objects);
    let seen: BTreeSet<&str> = containers.iter().map(|(b, _, _)| b.as_str()).collect();
    assert_eq!(
        seen,
        SERVICES.iter().copied().collect(),
        "a Deployment per service"
    );
    for (name, pod, container) in containers {
        let root = tempfile::tempdir().expect("temp dir");
        let env = container_env(&objects, pod, container, root.path(), true);
        let (code, stdout, stderr) = check_config(&name, &env.vars);
        assert_eq!(
            code,
            Some(0),
            "{name} check-config refused its manifest: {stderr}"
        );
        // The effective settings are printed, and no secret with them.
        assert!(stdout.contains("Settings"), "{name}: {stdout}");
        for (var, secret) in &env.secrets {
            for part in secret_parts(secret) {
                assert!(!stdout.contains(&part), "{name} check-config printed {var}");
            }
        }
    }
}

#[test]
fn kubernetes_operator_cli_in_the_token_service_pod_finds_its_key() {
    // `kubectl exec deploy/token-service -- token-service installs list`: the pod's own
    // environment and files. Nothing listens where it dials here, so the tool gets as far as
    // dialling with a key (exit 1), where a missing key is a usage error (exit 2).
    let objects = overlay("demo");
    let (_, pod, container) = service_containers(&objects)
        .into_iter()
        .find(|(binary, _, _)| binary == "token-service")
        .expect("a token-service Deployment");
    let root = tempfile::tempdir().expect("temp dir");
    let mut env = container_env(&objects, pod, container, root.path(), true);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    env.vars
        .insert("TOKEN_SERVICE_ADDR".into(), format!("0.0.0.0:{closed}"));
    let list = |vars: &BTreeMap<String, String>| {
        let out = Command::new(binary("token-service"))
            .args(["installs", "list"])
            .env_clear()
            .envs(vars)
            .output()
            .expect("binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = list(&env.vars);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&closed.to_string()) && !stderr.contains("no key"),
        "{stderr}"
    );
    for secret in env.secrets.values() {
        for part in secret_parts(secret) {
            assert!(!stderr.contains(&part), "a secret was shown: {stderr}");
        }
    }
    env.vars.remove("TOKEN_SERVICE_CLIENT_KEYS_FILE");
    let (code, stderr) = list(&env.vars);
    assert_eq!(code, Some(2), "without the key file: {stderr}");
    assert!(stderr.contains("no key"), "{stderr}");
}

#[test]
fn kubernetes_probes_ports_and_commands_name_what_the_binaries_serve() {
    let token_service = snykapps_proto::token_v1::token_service_server::SERVICE_NAME;
    for (variant, objects) in variants() {
        for (name, pod, container) in service_containers(&objects) {
            let root = tempfile::tempdir().expect("temp dir");
            let vars = container_env(&objects, pod, container, root.path(), false).vars;
            let (main, metrics) = served_ports(&name, &vars);
            assert_eq!(
                array(&container["command"]).len(),
                1,
                "{variant} {name}: serve, no subcommand"
            );
            assert!(container["args"].is_null(), "{variant} {name}: no args");
            let declared: BTreeSet<u16> = array(&container["ports"])
                .iter()
                .map(|p| resolve_port(container, &p["containerPort"]))
                .collect();
            let served: BTreeSet<u16> = std::iter::once(main).chain(metrics).collect();
            assert_eq!(declared, served, "{variant} {name}: container ports");
            for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
                let probe = &container[kind];
                if probe.is_null() {
                    assert_ne!(
                        kind, "readinessProbe",
                        "{variant} {name} has no readiness probe"
                    );
                    continue;
                }
                if probe["httpGet"].is_object() {
                    assert_ne!(name, "token-service", "token-service serves gRPC, not HTTP");
                    assert_eq!(resolve_port(container, &probe["httpGet"]["port"]), main);
                    let path = str_of(&probe["httpGet"]["path"]);
                    let expected = if kind == "readinessProbe" {
                        "/readyz"
                    } else {
                        "/healthz"
                    };
                    assert_eq!(path, expected, "{variant} {name} {kind}");
                } else if probe["grpc"].is_object() {
                    assert_eq!(name, "token-service", "{variant} {name}: gRPC probe");
                    assert_eq!(resolve_port(container, &probe["grpc"]["port"]), main);
                    let service = str_of(&probe["grpc"]["service"]);
                    let expected = if kind == "readinessProbe" {
                        token_service
                    } else {
                        ""
                    };
                    assert_eq!(service, expected, "{variant} {name} {kind}");
                } else if probe["exec"].is_object() {
                    let command: Vec<&str> = array(&probe["exec"]["command"])
                        .iter()
                        .map(str_of)
                        .collect();
                    assert_eq!(
                        command,
                        [name.as_str(), "healthcheck"],
                        "{variant} {name} {kind}"
                    );
                } else {
                    panic!("{variant} {name} {kind}: unknown probe {probe}");
                }
            }
        }
        // Every Service's target port is one its pods declare.
        for service in of_kind(&objects, "Service") {
            let selector = &service["spec"]["selector"]["app.kubernetes.io/name"];
            let workload = objects
                .iter()
                .find(|o| {
                    o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
                        == *selector
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{variant}: Service {} selects nothing",
                        service["metadata"]["name"]
                    )
                });
            let container = &workload["spec"]["template"]["spec"]["containers"][0];
            for port in array(&service["spec"]["ports"]) {
                resolve_port(container, &port["targetPort"]);
            }
        }
    }
}

#[test]
fn kubernetes_pods_are_hardened_sized_and_spread() {
    for (variant, objects) in variants() {
        for (workload, pod) in pod_specs(&objects) {
            let at = format!("{variant}: {workload}");
            assert_eq!(
                pod["automountServiceAccountToken"], false,
                "{at}: token automount"
            );
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"], true,
                "{at}: runAsNonRoot"
            );
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{at}"
            );
            for container in array(&pod["containers"]) {
                let sc = &container["securityContext"];
                assert_eq!(
                    sc["readOnlyRootFilesystem"], true,
                    "{at}: readOnlyRootFilesystem"
                );
                assert_eq!(
                    sc["allowPrivilegeEscalation"], false,
                    "{at}: allowPrivilegeEscalation"
                );
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{at}: capabilities"
                );
                assert!(
                    sc["capabilities"]["add"].is_null(),
                    "{at}: no capability added"
                );
                for bound in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            container["resources"][bound][resource].is_string(),
                            "{at}: resources.{bound}.{resource}"
                        );
                    }
                }
            }
        }
        for (service, replicas) in [
            ("token-service", 3),
            ("projects-service", 2),
            ("auth-service", 2),
        ] {
            let at = format!("{variant}: {service}");
            // The count is the autoscaler's minimum (the Deployment sets none: see
            // `kubernetes_no_deployment_sets_the_count_its_autoscaler_owns`).
            let deployment = named(&objects, "Deployment", service);
            let pdb = named(&objects, "PodDisruptionBudget", service);
            assert_eq!(
                pdb["spec"]["maxUnavailable"], 1,
                "{at}: PodDisruptionBudget"
            );
            assert_eq!(
                pdb["spec"]["selector"]["matchLabels"],
                deployment["spec"]["selector"]["matchLabels"],
                "{at}: the budget covers the Deployment's pods"
            );
            let hpa = named(&objects, "HorizontalPodAutoscaler", service);
            assert_eq!(hpa["spec"]["minReplicas"], replicas, "{at}: HPA minimum");
            assert!(
                hpa["spec"]["maxReplicas"].as_u64() > hpa["spec"]["minReplicas"].as_u64(),
                "{at}: HPA maximum"
            );
            assert_eq!(
                hpa["spec"]["scaleTargetRef"]["name"], service,
                "{at}: HPA target"
            );
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(
                pod["topologySpreadConstraints"][0]["topologyKey"], "kubernetes.io/hostname",
                "{at}: spread over nodes"
            );
            // The pod is given its drain time and then the longest call it may still finish.
            let root = tempfile::tempdir().expect("temp dir");
            let container = &pod["containers"][0];
            let vars = container_env(&objects, pod, container, root.path(), false).vars;
            let drain_ms: u64 = vars["SHUTDOWN_DRAIN_MS"]
                .parse()
                .expect("SHUTDOWN_DRAIN_MS");
            assert!(
                drain_ms > 0,
                "{at}: readiness must turn off before the pod stops"
            );
            let grace = pod["terminationGracePeriodSeconds"]
                .as_u64()
                .expect("grace period");
            assert!(
                grace * 1000 >= drain_ms + 30_000,
                "{at}: {grace} s for a {drain_ms} ms drain"
            );
        }
    }
}

#[test]
fn kubernetes_no_deployment_sets_the_count_its_autoscaler_owns() {
    for (variant, objects) in variants() {
        for hpa in of_kind(&objects, "HorizontalPodAutoscaler") {
            let target = &hpa["spec"]["scaleTargetRef"];
            assert_eq!(target["kind"], "Deployment", "{variant}: {hpa}");
            let deployment = named(&objects, "Deployment", str_of(&target["name"]));
            assert!(
                deployment["spec"]["replicas"].is_null(),
                "{variant}: Deployment {} sets replicas, which every `kubectl apply` would \
                 reset under its HorizontalPodAutoscaler",
                target["name"]
            );
        }
    }
}

#[test]
fn kubernetes_network_policies_allow_exactly_the_architectures_edges() {
    for (variant, objects) in variants() {
        let expected = expected_edges(if variant == "demo" {
            "demo"
        } else {
            "production"
        });
        let actual = policy_edges(&objects);
        let extra: Vec<_> = actual.difference(&expected).collect();
        let missing: Vec<_> = expected.difference(&actual).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{variant}: edges not in the architecture: {extra:#?}\nedges missing: {missing:#?}"
        );
    }
}

#[test]
fn kubernetes_demo_redis_users_are_the_repositorys() {
    let root = kubernetes_dir().join("../redis");
    for file in ["redis.acl", "redis-auth.acl"] {
        let original = std::fs::read_to_string(root.join(file)).expect("deploy/redis");
        let copy = std::fs::read_to_string(kubernetes_dir().join("overlays/demo/redis").join(file))
            .expect("the demo's copy");
        assert_eq!(
            copy, original,
            "overlays/demo/redis/{file} differs from deploy/redis/{file}"
        );
    }
}

#[test]
fn kubernetes_optional_components_render_what_they_promise() {
    let all = variants();
    let find = |label: &str| &all.iter().find(|(v, _)| v.ends_with(label)).expect(label).1;
    // cert-manager issues exactly the Secrets the production overlay mounts, naming each Service
    // and localhost (the in-pod healthcheck's and operator CLI's address).
    let with_certs = find("cert-manager");
    for service in ["token-service", "projects-service"] {
        let cert = named(with_certs, "Certificate", &format!("{service}-tls"));
        assert_eq!(cert["spec"]["secretName"], format!("{service}-tls"));
        let names: Vec<&str> = array(&cert["spec"]["dnsNames"])
            .iter()
            .map(str_of)
            .collect();
        assert!(
            names.contains(&service) && names.contains(&"localhost"),
            "{names:?}"
        );
        let mounted = pod_specs(with_certs).iter().any(|(_, pod)| {
            array(&pod["volumes"])
                .iter()
                .any(|v| v["secret"]["secretName"] == format!("{service}-tls"))
        });
        assert!(mounted, "{service}-tls is mounted");
    }
    // Each ServiceMonitor scrapes a named port of the Service it selects.
    let with_monitors = find("service-monitor");
    let monitors = of_kind(with_monitors, "ServiceMonitor");
    assert_eq!(monitors.len(), SERVICES.len());
    for monitor in monitors {
        let selected = &monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"];
        let service = named(with_monitors, "Service", str_of(selected));
        for endpoint in array(&monitor["spec"]["endpoints"]) {
            assert!(
                array(&service["spec"]["ports"])
                    .iter()
                    .any(|p| p["name"] == endpoint["port"]),
                "ServiceMonitor {selected} scrapes port {}, which its Service lacks",
                endpoint["port"]
            );
        }
    }
}
