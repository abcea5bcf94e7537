//! The rendered manifests as data for tests/system/kubernetes.rs: `kubectl kustomize` of each
//! overlay and optional component, lookups of objects, and a container's environment and mounted
//! files resolved from the rendered ConfigMaps and Secrets.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use base64::Engine as _;
use serde_json::Value;

/// Our services: the binary each Deployment runs, with `check-config`.
pub const SERVICES: &[&str] = &["token-service", "projects-service", "auth-service"];

pub fn kubernetes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .join("deploy/kubernetes")
}

/// `kubectl kustomize <dir>`, as objects.
pub fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs (.ci/run installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_documents(&String::from_utf8(out.stdout).expect("UTF-8"))
}

pub fn parse_documents(yaml: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in yaml.lines().chain(std::iter::once("---")) {
        if line == "---" {
            if !current.trim().is_empty() {
                docs.push(serde_norway::from_str(&current).expect("rendered YAML"));
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

pub fn overlay(name: &str) -> Vec<Value> {
    render(&kubernetes_dir().join("overlays").join(name))
}

pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

pub fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

pub fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// Every object's pod template (Deployments and StatefulSets) with the workload's name.
pub fn pod_specs(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
        .map(|o| {
            (
                str_of(&o["metadata"]["name"]).to_owned(),
                &o["spec"]["template"]["spec"],
            )
        })
        .collect()
}

/// The rendered objects each check runs on: both overlays, and production with each optional
/// component (a throwaway kustomization in a temp dir, as a user's own would be).
pub fn variants() -> Vec<(String, Vec<Value>)> {
    let mut all = vec![
        ("demo".to_owned(), overlay("demo")),
        ("production".to_owned(), overlay("production")),
    ];
    let components = kubernetes_dir().join("components");
    let mut names: Vec<String> = std::fs::read_dir(&components)
        .expect("deploy/kubernetes/components")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let dir = tempfile::tempdir().expect("temp dir");
        // Kustomize takes relative paths only: up to the root, then down.
        let up = "../".repeat(dir.path().components().count() - 1);
        let relative =
            |p: &Path| format!("{up}{}", p.display().to_string().trim_start_matches('/'));
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\ncomponents: [{}]\n",
                relative(&kubernetes_dir().join("overlays/production")),
                relative(&components.join(&name))
            ),
        )
        .expect("write kustomization");
        all.push((format!("production + {name}"), render(dir.path())));
    }
    all
}

/// The environment and files a container would see, resolved from the rendered ConfigMaps and
/// Secrets, with each mounted volume materialised under `root` (mount paths in values rewritten).
pub struct ContainerEnv {
    pub vars: BTreeMap<String, String>,
    /// Each variable that hands the binary a secret, with the secret: one by `secretKeyRef`, or a
    /// `<NAME>_FILE` naming a file of a mounted Secret (the file's contents).
    pub secrets: BTreeMap<String, String>,
}

/// The Secret mounted where `path` lies in `container`, and the file's key in it.
pub fn secret_file_of<'a>(
    pod: &'a Value,
    container: &'a Value,
    path: &'a str,
) -> Option<(&'a str, &'a str)> {
    array(&container["volumeMounts"]).iter().find_map(|mount| {
        let rest = path.strip_prefix(str_of(&mount["mountPath"]))?;
        let file = rest.strip_prefix('/')?;
        let volume = array(&pod["volumes"])
            .iter()
            .find(|v| v["name"] == mount["name"])?;
        let secret = &volume["secret"];
        // `items` renames keys to paths, and leaves out every key it does not list.
        let key = match secret["items"].as_array() {
            None => file,
            Some(items) => str_of(&items.iter().find(|i| i["path"] == file)?["key"]),
        };
        Some((secret["secretName"].as_str()?, key))
    })
}

pub fn config_data(objects: &[Value], kind: &str, name: &str) -> BTreeMap<String, String> {
    let object = named(objects, kind, name);
    object_data(object, kind)
}

/// The data of an object named by a reference: a Secret the operator creates (the production
/// overlay's) is not rendered, so it is empty unless `strict`.
pub fn referenced_data(
    objects: &[Value],
    kind: &str,
    name: &str,
    strict: bool,
) -> BTreeMap<String, String> {
    match objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    {
        Some(object) => object_data(object, kind),
        None if !strict && kind == "Secret" => BTreeMap::new(),
        None => panic!("{kind} {name} is referenced but not in the manifests"),
    }
}

pub fn object_data(object: &Value, kind: &str) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    if let Some(map) = object["data"].as_object() {
        for (k, v) in map {
            let value = if kind == "Secret" {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(str_of(v).split_whitespace().collect::<String>())
                    .expect("Secret data is base64");
                String::from_utf8(bytes).expect("UTF-8 secret")
            } else {
                str_of(v).to_owned()
            };
            data.insert(k.clone(), value);
        }
    }
    if let Some(map) = object["stringData"].as_object() {
        for (k, v) in map {
            data.insert(k.clone(), str_of(v).to_owned());
        }
    }
    data
}

/// The settings a container is given as they are written: its ConfigMaps (`envFrom`, by key)
/// and its literal `env` values, paths unresolved. Secrets are left out.
pub fn configured_vars(objects: &[Value], container: &Value) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for source in array(&container["envFrom"]) {
        if let Some(name) = source["configMapRef"]["name"].as_str() {
            vars.extend(config_data(objects, "ConfigMap", name));
        }
    }
    for var in array(&container["env"]) {
        let from = &var["valueFrom"]["configMapKeyRef"];
        let value = match var["value"].as_str() {
            Some(v) => v.to_owned(),
            None if from.is_object() => config_data(objects, "ConfigMap", str_of(&from["name"]))
                [str_of(&from["key"])]
            .clone(),
            None => continue,
        };
        vars.insert(str_of(&var["name"]).to_owned(), value);
    }
    vars
}

/// `strict`: every referenced Secret must be in `objects` (the demo makes them all).
pub fn container_env(
    objects: &[Value],
    pod: &Value,
    container: &Value,
    root: &Path,
    strict: bool,
) -> ContainerEnv {
    let mut vars = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for source in array(&container["envFrom"]) {
        if let Some(name) = source["configMapRef"]["name"].as_str() {
            vars.extend(config_data(objects, "ConfigMap", name));
        }
        if let Some(name) = source["secretRef"]["name"].as_str() {
            vars.extend(referenced_data(objects, "Secret", name, strict));
        }
    }
    for var in array(&container["env"]) {
        let name = str_of(&var["name"]).to_owned();
        let from = &var["valueFrom"];
        let value = if let Some(v) = var["value"].as_str() {
            v.to_owned()
        } else if from["secretKeyRef"].is_object() {
            let (secret, key) = (&from["secretKeyRef"]["name"], &from["secretKeyRef"]["key"]);
            let data = referenced_data(objects, "Secret", str_of(secret), strict);
            let value = match data.get(str_of(key)) {
                Some(value) => value.clone(),
                None if !strict => format!("from-secret-{}-{}", str_of(secret), str_of(key)),
                None => panic!("Secret {secret} has no key {key}"),
            };
            secrets.insert(name.clone(), value.clone());
            value
        } else if from["configMapKeyRef"].is_object() {
            let data = config_data(
                objects,
                "ConfigMap",
                str_of(&from["configMapKeyRef"]["name"]),
            );
            data[str_of(&from["configMapKeyRef"]["key"])].clone()
        } else {
            panic!("env {name}: unsupported source {var}");
        };
        vars.insert(name, value);
    }
    // A `<NAME>_FILE` that names a file of a mounted Secret hands the binary that secret.
    for (name, path) in &vars {
        if !name.ends_with("_FILE") {
            continue;
        }
        if let Some((secret, key)) = secret_file_of(pod, container, path) {
            let data = referenced_data(objects, "Secret", secret, strict);
            match data.get(key) {
                Some(value) => {
                    secrets.insert(name.clone(), value.clone());
                }
                None if !strict => {}
                None => panic!("{name}: Secret {secret} has no key {key}"),
            }
        }
    }
    for mount in array(&container["volumeMounts"]) {
        let mount_path = str_of(&mount["mountPath"]);
        let volume = array(&pod["volumes"])
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {}", mount["name"]));
        let files = if let Some(secret) = volume["secret"]["secretName"].as_str() {
            referenced_data(objects, "Secret", secret, strict)
        } else if let Some(map) = volume["configMap"]["name"].as_str() {
            config_data(objects, "ConfigMap", map)
        } else {
            continue;
        };
        let dir = root.join(mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("mount dir");
        for (key, value) in files {
            std::fs::write(dir.join(key), value).expect("mounted file");
        }
        let local = dir.display().to_string();
        for value in vars.values_mut() {
            if value
                .strip_prefix(mount_path)
                .is_some_and(|rest| rest.starts_with('/'))
            {
                *value = value.replacen(mount_path, &local, 1);
            }
        }
    }
    ContainerEnv { vars, secrets }
}

/// Our services' containers in the demo overlay: (binary, pod spec, container).
pub fn service_containers(objects: &[Value]) -> Vec<(String, &Value, &Value)> {
    let mut found = Vec::new();
    for (_, pod) in pod_specs(objects) {
        for container in array(&pod["containers"]) {
            let command = str_of(&container["command"][0]);
            if SERVICES.contains(&command) {
                found.push((command.to_owned(), pod, container));
            }
        }
    }
    found
}

pub fn resolve_port(container: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).expect("port");
    }
    array(&container["ports"])
        .iter()
        .find(|p| p["name"] == *port)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or_else(|| panic!("no container port named {port}"))
}

/// One side of an allowed connection: `in|out: <from> -> <to>:<port>/<protocol>`.
pub fn policy_edges(objects: &[Value]) -> BTreeSet<String> {
    let peer = |p: &Value| -> String {
        let pod = str_of(&p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]);
        let pod = if pod.is_empty() {
            str_of(&p["podSelector"]["matchLabels"]["k8s-app"])
        } else {
            pod
        };
        if let Some(cidr) = p["ipBlock"]["cidr"].as_str() {
            let except = array(&p["ipBlock"]["except"]).len();
            return if except > 0 {
                format!("{cidr}-private")
            } else {
                cidr.to_owned()
            };
        }
        match p["namespaceSelector"].as_object() {
            None => pod.to_owned(),
            Some(ns) if ns.is_empty() => format!("*/{pod}"),
            Some(_) => format!(
                "{}/{pod}",
                str_of(&p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
            ),
        }
    };
    let mut edges = BTreeSet::new();
    for policy in of_kind(objects, "NetworkPolicy") {
        let spec = &policy["spec"];
        let selector = &spec["podSelector"];
        let mut targets: Vec<String> = array(&selector["matchExpressions"][0]["values"])
            .iter()
            .map(|v| str_of(v).to_owned())
            .collect();
        if let Some(name) = selector["matchLabels"]["app.kubernetes.io/name"].as_str() {
            targets.push(name.to_owned());
        }
        if targets.is_empty() {
            assert!(
                spec["ingress"].is_null() && spec["egress"].is_null(),
                "a policy over every pod may only deny: {policy}"
            );
            edges.insert(format!("deny-all {}", spec["policyTypes"]));
            continue;
        }
        for (direction, peers_key) in [("ingress", "from"), ("egress", "to")] {
            for rule in array(&spec[direction]) {
                let peers: Vec<String> = match rule[peers_key].as_array() {
                    None => vec!["*".to_owned()],
                    Some(list) => list.iter().map(peer).collect(),
                };
                for port in array(&rule["ports"]) {
                    let port = format!("{}/{}", port["port"], str_of(&port["protocol"]));
                    for target in &targets {
                        for other in &peers {
                            edges.insert(match direction {
                                "ingress" => format!("in: {other} -> {target}:{port}"),
                                _ => format!("out: {target} -> {other}:{port}"),
                            });
                        }
                    }
                }
            }
        }
    }
    edges
}
