//! A throwaway Redis Cluster of three masters.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{ADMIN_USER, READY_TIMEOUT, RedisOptions, RedisServer, RedisStartError, password_of};

/// A local Redis Cluster of three masters (no replicas), created with `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// `redis-cli` signed in as [`ADMIN_USER`] (the server's ACL file has one), else as default.
fn redis_cli(acl: bool) -> Command {
    let mut cli = Command::new("redis-cli");
    if acl {
        cli.args(["--user", ADMIN_USER, "--no-auth-warning", "--pass"])
            .arg(password_of(ADMIN_USER));
    }
    cli
}

impl RedisCluster {
    /// Starts three `--cluster-enabled` servers on free ports and joins them into one cluster.
    pub fn start() -> Result<Self, RedisStartError> {
        Self::start_with_acl(None)
    }

    /// [`RedisCluster::start`], every node under the ACL file `acl` (see [`RedisOptions::acl`]).
    pub fn start_with_acl(acl: Option<PathBuf>) -> Result<Self, RedisStartError> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(RedisOptions {
                tcp: true,
                cluster: true,
                acl: acl.clone(),
                ..RedisOptions::default()
            })?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.port())
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = redis_cli(acl.is_some())
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => RedisStartError::NotInstalled,
                _ => RedisStartError::Io(e),
            })?;
        if !out.status.success() {
            return Err(RedisStartError::NotReady(
                READY_TIMEOUT,
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    /// `redis://127.0.0.1:PORT` of every node, for the test's own client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().filter_map(RedisServer::tcp_url).collect()
    }

    /// `redis://user:password@127.0.0.1:PORT` of every node, for `REDIS_CLUSTER_URLS`.
    pub fn urls_as(&self, user: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| n.tcp_url_as(user))
            .collect()
    }

    fn wait_until_ok(&self) -> Result<(), RedisStartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let all_ok = self.nodes.iter().all(|n| {
                redis_cli(n.acl)
                    .arg("-s")
                    .arg(n.socket_path())
                    .args(["cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if all_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RedisStartError::NotReady(
                    READY_TIMEOUT,
                    "cluster_state never became ok".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
