//! Demo and real mode: the demo values shipped in the code are exactly compose's demo secrets,
//! and real mode drops the fake, turns demo mode off and requires every secret.

use super::*;

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
