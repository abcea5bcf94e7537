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

mod compose;
mod image;
mod observability;
mod secrets;
mod tls;

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
