//! The real service binaries as child processes, for tests that must kill one with SIGKILL or
//! read what only a separate process shows (telemetry with its own service name).

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The path of a workspace binary built next to this test binary (`target/<profile>/<name>`).
/// `scripts/test` builds them before running the tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/system-<hash> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test does)",
        path.display()
    );
    path
}

/// A running service process; killed (SIGKILL) when dropped.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts `name` with exactly `env` (plus PATH), logging to a file shown on failure.
    pub fn spawn(name: &str, env: &[(&str, String)]) -> Process {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(binary(name));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let child = test_support::spawn_tied_to_process(cmd).expect("service process starts");
        Process {
            name: name.to_owned(),
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process is frozen as a VM pause or a long stall would freeze it.
    pub fn freeze(&self) {
        assert!(self.signal("-STOP"), "SIGSTOP {} failed", self.name);
    }

    /// SIGCONT after [`Process::freeze`].
    pub fn thaw(&self) {
        assert!(self.signal("-CONT"), "SIGCONT {} failed", self.name);
    }

    fn signal(&self, sig: &str) -> bool {
        self.child.as_ref().is_some_and(|c| {
            Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// SIGTERM, then waits for a graceful exit (at most `timeout`); returns the exit success.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("{} exited with {status}; log:\n{}", self.name, self.log());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL ends a frozen process too.
        self.kill9();
    }
}

/// Polls `ready` every 50 ms until it holds; fails the test with the process's log when the
/// process exits or 20 s pass (`{name} never {what}`).
async fn wait_until<F: std::future::Future<Output = bool>>(
    process: &mut Process,
    what: &str,
    mut ready: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        process.assert_running();
        if ready().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never {what}; log:\n{}",
            process.name,
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `addr` until the gRPC health check answers SERVING for `service`.
pub async fn wait_grpc_serving(process: &mut Process, addr: SocketAddr, service: &str) {
    wait_until(process, "became ready", move || async move {
        let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        else {
            return false;
        };
        let req = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(req)
            .await
            .is_ok_and(|r| {
                r.into_inner().status()
                    == tonic_health::pb::health_check_response::ServingStatus::Serving
            })
    })
    .await;
}

/// Polls `url` until it answers 200.
pub async fn wait_http_ok(process: &mut Process, url: &str) {
    wait_until(process, &format!("answered {url}"), move || async move {
        reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

/// `{name} healthcheck` (the real binary) with exactly `env`, as a container healthcheck runs it:
/// did it report healthy?
pub fn healthcheck(name: &str, env: &[(&str, String)]) -> bool {
    Command::new(binary(name))
        .arg("healthcheck")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::null())
        .status()
        .expect("the healthcheck runs")
        .success()
}

/// Polls [`healthcheck`] of `process`, run with `env`, until it reports healthy.
pub async fn wait_healthcheck(process: &mut Process, env: &[(&str, String)]) {
    let name = process.name.clone();
    wait_until(process, "healthy by its healthcheck", || {
        std::future::ready(healthcheck(&name, env))
    })
    .await;
}
