//! Prometheus, Grafana and the trace collector: Grafana serves the repository's dashboard behind
//! a password, and each observability container reaches only what it scrapes or receives from.

use super::*;

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
