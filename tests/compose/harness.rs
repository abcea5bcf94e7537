//! One Compose project of the repository's own compose files, started with `docker-compose` (or
//! `docker compose`) and always taken down with its volumes, whatever the test's outcome.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// How long `up` plus every healthcheck may take before the test fails and says which service
/// is not healthy. The stack's own chain (Redis → token-service → projects-service →
/// auth-service, a 5-second healthcheck interval each) takes about 25 s.
pub const HEALTHY_DEADLINE: Duration = Duration::from_secs(120);

/// Where the demo stack publishes the fake Snyk (docker-compose.yml; its `/_fake/*` control
/// endpoints are served in demo mode).
pub const DEMO_FAKE: &str = "http://127.0.0.1:8090";

/// The demo fake Snyk's counters (`/_fake/stats`).
pub async fn fake_stats() -> serde_json::Value {
    reqwest::get(format!("{DEMO_FAKE}/_fake/stats"))
        .await
        .unwrap_or_else(|e| panic!("fake-snyk answers on its published port {DEMO_FAKE}: {e}"))
        .json()
        .await
        .unwrap()
}

/// The repository's root, where the compose files are.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

/// The Compose tool, chosen as `scripts/compose` chooses it: `COMPOSE` (scripts/compose-test
/// sets it), else Compose v2 (`docker compose`) when the engine has it, else `docker-compose`.
fn compose_tool() -> Vec<String> {
    let chosen = std::env::var("COMPOSE")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| {
            let v2 = Command::new("docker")
                .args(["compose", "version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if v2 {
                "docker compose"
            } else {
                "docker-compose"
            }
            .into()
        });
    chosen.split_whitespace().map(str::to_owned).collect()
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `docker args…`; panics with its output when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A container of the project, as Docker reports it.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    /// `running`, `exited`, …
    pub state: String,
    /// `healthy`, `starting`, `unhealthy`, or empty without a healthcheck.
    pub health: String,
    /// The exit code of its last run (0 while running).
    pub exit_code: i32,
}

impl Container {
    /// Running, and healthy if it has a healthcheck; or a one-shot job (no healthcheck, such as
    /// compose.real.yml's `internal-certs`) that has done its work.
    pub fn ready(&self) -> bool {
        (self.state == "running" && (self.health.is_empty() || self.health == "healthy"))
            || self.completed()
    }

    /// A one-shot job (no healthcheck) that exited with 0.
    pub fn completed(&self) -> bool {
        self.state == "exited" && self.exit_code == 0 && self.health.is_empty()
    }

    /// Exited (other than a completed job), dead, or failing its healthcheck: it will not turn
    /// healthy by waiting.
    pub fn failed(&self) -> bool {
        (!matches!(self.state.as_str(), "running" | "created") && !self.completed())
            || self.health == "unhealthy"
    }
}

/// A running Compose project; `down -v` on drop.
pub struct Compose {
    pub project: String,
    files: Vec<PathBuf>,
    env_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Compose {
    /// A project of `files` (relative to the repository) with exactly the variables `env` (an
    /// env file of its own: a developer's `.env` is never read). Nothing is started yet.
    pub fn new(files: &[&str], env: &[(&str, &str)]) -> Compose {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let project = format!(
            "snykapps-ct-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("compose-test-")
            .tempdir()
            .unwrap();
        let env_file = dir.path().join("env");
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&env_file, text).unwrap();
        Compose {
            project,
            files: files.iter().map(|f| repo().join(f)).collect(),
            env_file,
            _dir: dir,
        }
    }

    /// Adds an override file made from the project's resolved configuration (`config`, with
    /// this project's variables): `make` gets it and returns the override. For what a static
    /// file cannot say in both Compose versions, e.g. more replicas of a service exactly as the
    /// user's file defines it (`extends` refuses services with `depends_on`).
    pub fn with_override(
        mut self,
        make: impl FnOnce(&serde_norway::Value) -> serde_norway::Value,
    ) -> Compose {
        let out = self
            .command(&["config"])
            .output()
            .expect("the compose tool runs");
        assert!(
            out.status.success(),
            "compose config: {}",
            output_text(&out)
        );
        let resolved: serde_norway::Value =
            serde_norway::from_slice(&out.stdout).expect("compose config is YAML");
        let path = self._dir.path().join("override.yml");
        std::fs::write(&path, serde_norway::to_string(&make(&resolved)).unwrap()).unwrap();
        self.files.push(path);
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_of(compose_tool(), args)
    }

    /// `program` (the Compose tool, or `scripts/compose`) with this project's global options.
    fn command_of(&self, tool: Vec<String>, args: &[&str]) -> Command {
        let mut cmd = Command::new(&tool[0]);
        cmd.args(&tool[1..])
            .current_dir(repo())
            .arg("--project-name")
            .arg(&self.project)
            .arg("--env-file")
            .arg(&self.env_file);
        for f in &self.files {
            cmd.arg("--file").arg(f);
        }
        cmd.args(args)
            // Only what the env file says: the shell's settings must not change the stack.
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES");
        cmd
    }

    /// `compose args…`, its output, and whether it succeeded.
    pub fn try_run(&self, args: &[&str]) -> (bool, String) {
        let out = self.command(args).output().expect("the compose tool runs");
        (out.status.success(), output_text(&out))
    }

    /// `scripts/compose up -d` (the README's command: it makes the images unless the engine has
    /// them, then runs Compose's `up`), then waits until every container is healthy; on
    /// failure, panics naming the service and showing its logs.
    pub async fn up(&self, extra: &[&str]) {
        let started = Instant::now();
        let script = repo().join("scripts/compose").display().to_string();
        let out = self
            .command_of(vec![script], &[&["up", "-d"][..], extra].concat())
            .output()
            .expect("scripts/compose runs");
        let (ok, text) = (out.status.success(), output_text(&out));
        let waited = if ok {
            self.wait_healthy(HEALTHY_DEADLINE.saturating_sub(started.elapsed()))
                .await
        } else {
            Err(self.diagnose())
        };
        if let Err(why) = waited {
            panic!(
                "the stack did not come up healthy (project {}):\n{why}\ncompose up said:\n{text}",
                self.project
            );
        }
        eprintln!(
            "compose: {} healthy in {:.1} s",
            self.project,
            started.elapsed().as_secs_f64()
        );
    }

    /// Waits until every container runs and every healthcheck says healthy. Fails early when a
    /// container exits or turns unhealthy, and at `deadline`; the error names each service that
    /// is not healthy, with its last healthcheck output and its logs.
    pub async fn wait_healthy(&self, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        loop {
            let containers = self.containers();
            let failed = containers.iter().any(Container::failed);
            let ready = !containers.is_empty() && containers.iter().all(Container::ready);
            if ready {
                return Ok(());
            }
            if failed || Instant::now() >= until {
                return Err(self.diagnose());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Why the project is not healthy, by service, with each one's last healthcheck and logs:
    /// the containers that failed (exited, unhealthy) when there are any, else every one that
    /// is not running and healthy yet.
    pub fn diagnose(&self) -> String {
        let mut report = String::new();
        let containers = self.containers();
        let blame_failed = containers.iter().any(Container::failed);
        for c in containers {
            if c.ready() || (blame_failed && !c.failed()) {
                continue;
            }
            let last_check = docker(&[
                "inspect",
                "-f",
                "{{if .State.Health}}{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}\n{{end}}{{end}}",
                &c.id,
            ]);
            let last_check = last_check.lines().last().unwrap_or("").to_owned();
            report.push_str(&format!(
                "service {} ({}) is {}{}; last healthcheck: {}\n--- logs of {} ---\n{}\n",
                c.service,
                c.name,
                c.state,
                if c.health.is_empty() {
                    String::new()
                } else {
                    format!(", {}", c.health)
                },
                if last_check.is_empty() {
                    "none"
                } else {
                    &last_check
                },
                c.service,
                self.logs(&c.id),
            ));
        }
        if report.is_empty() {
            report = "no container of the project was created".into();
        }
        report
    }

    /// The project's containers (also stopped ones), in service order.
    pub fn containers(&self) -> Vec<Container> {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
        ]);
        let mut all: Vec<Container> = ids
            .lines()
            .map(|id| {
                let line = docker(&[
                    "inspect",
                    "-f",
                    "{{.Name}}|{{index .Config.Labels \"com.docker.compose.service\"}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}",
                    id,
                ]);
                let mut parts = line.splitn(5, '|');
                let mut next = || parts.next().unwrap_or_default().to_owned();
                Container {
                    id: id.to_owned(),
                    name: next().trim_start_matches('/').to_owned(),
                    service: next(),
                    state: next(),
                    health: next(),
                    exit_code: next().trim().parse().unwrap_or(-1),
                }
            })
            .collect();
        all.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
        all
    }

    /// The containers of `service`, by name.
    pub fn service(&self, service: &str) -> Vec<Container> {
        self.containers()
            .into_iter()
            .filter(|c| c.service == service)
            .collect()
    }

    /// The one container of `service`.
    pub fn one(&self, service: &str) -> Container {
        let mut all = self.service(service);
        assert_eq!(all.len(), 1, "one container of {service}: {all:?}");
        all.remove(0)
    }

    /// The last lines of a container's log (stdout and stderr).
    pub fn logs(&self, container: &str) -> String {
        let out = Command::new("docker")
            .args(["logs", "--tail", "60", container])
            .output()
            .expect("docker runs");
        output_text(&out)
    }

    /// The host address that `service`'s container port `port` is published on.
    pub fn published(&self, service: &str, port: u16) -> SocketAddr {
        let c = self.one(service);
        let text = docker(&["port", &c.id, &format!("{port}/tcp")]);
        let first = text.lines().next().unwrap_or_default();
        first
            .parse()
            .unwrap_or_else(|_| panic!("{service}:{port} is not published: {text:?}"))
    }

    /// `docker exec` in `container` with `env` added: whether it succeeded, and its output.
    pub fn exec(&self, container: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new("docker");
        cmd.arg("exec");
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        let out = cmd.arg(container).args(args).output().expect("docker runs");
        (out.status.success(), output_text(&out))
    }

    /// The address of `service`'s one container on the project's network `network`.
    pub fn ip(&self, service: &str, network: &str) -> String {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.network(network)
        );
        docker(&["inspect", "-f", &format, &self.one(service).id])
    }

    /// The name of the project's network `name` (Compose prefixes it with the project).
    pub fn network(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    /// Counts of what the project left behind after `down`: containers, networks, volumes.
    fn leftovers(&self) -> BTreeMap<&'static str, String> {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        [
            ("containers", vec!["ps", "-aq", "--filter", &filter]),
            ("networks", vec!["network", "ls", "-q", "--filter", &filter]),
            ("volumes", vec!["volume", "ls", "-q", "--filter", &filter]),
        ]
        .into_iter()
        .map(|(what, args)| (what, docker(&args)))
        .filter(|(_, ids)| !ids.is_empty())
        .collect()
    }

    /// `down -v`, then checks that nothing of the project is left.
    pub fn down(&self) {
        let (ok, text) = self.try_run(&["down", "-v", "--remove-orphans", "--timeout", "10"]);
        let left = self.leftovers();
        assert!(
            ok && left.is_empty(),
            "compose down -v of {} left {left:?}:\n{text}",
            self.project
        );
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        // Also when the test failed: no container, network or volume stays behind.
        if std::thread::panicking() {
            let _ = self.try_run(&["down", "-v", "--remove-orphans", "--timeout", "5"]);
        } else {
            self.down();
        }
    }
}
