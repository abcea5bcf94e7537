//! Test helpers shared by every crate's tests: a throwaway `redis-server` per test (optionally
//! under one of the repository's ACL files, optionally serving TLS only), throwaway certificates,
//! free ports, and a server that never answers ([`silent_listener`]). The certificates are in
//! [`certs`], the three-node Redis Cluster in [`cluster`]; the single server is here.
//!
//! Tests must never share Redis state with each other or with the machine's own Redis, so each
//! test (or test binary) starts its own server in a temporary directory, listening on a unix
//! socket (and on a free TCP port only when asked), and stops it when the guard is dropped.
//!
//! Reading order (one file): [`RedisOptions`] and [`RedisServer`] (start, URLs per ACL user,
//! `kill` for crash tests; [`acl_file`] and [`password_of`] give each service its own user as
//! production does) → [`Certificates`] ([`certificates_for`]: a throwaway CA and server
//! certificates) → [`RedisCluster`] (three masters on free ports) → the small pieces:
//! [`free_port`], [`silent_listener`], [`spawn_tied_to_process`] (a child that dies with the test)
//! → the tests.

use std::{
    fmt,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub mod certs;
pub mod cluster;

pub use certs::{Certificates, certificates, certificates_for};
pub use cluster::RedisCluster;

/// Why a throwaway Redis could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    #[error(
        "`redis-server` is not installed or not on PATH; install it (Debian: `apt-get install -y redis-server`)"
    )]
    NotInstalled,
    #[error("could not start redis-server: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis-server did not become ready within {0:?}; its log:\n{1}")]
    NotReady(Duration, String),
}

/// Options for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Also listen on a free TCP port on 127.0.0.1 (needed for `redis-cli` style tools and cluster).
    pub tcp: bool,
    /// Turn on the append-only file (`appendfsync always`), for tests that restart Redis and expect
    /// the data back.
    pub persistent: bool,
    /// With `persistent`: `appendfsync everysec` (fsync once a second, what Redis ships with)
    /// instead of `always`.
    pub fsync_everysec: bool,
    /// Reuse this directory (a restarted server finds its AOF there) instead of a fresh temp dir.
    pub dir: Option<PathBuf>,
    /// Reuse this TCP port (a restart keeps the address its clients know).
    pub port: Option<u16>,
    /// Start with `--cluster-enabled yes` (see [`RedisCluster`]).
    pub cluster: bool,
    /// Load this ACL file (one of the repository's, [`acl_file`]) with each user's `@PASSWORD@`
    /// filled in by [`password_of`] the user, plus [`ADMIN_USER`] for the test's own reads
    /// ([`RedisServer::url`]). The services connect as their own users
    /// ([`RedisServer::url_as`]).
    pub acl: Option<PathBuf>,
    /// Serve TLS with these certificates on a free port ([`RedisServer::tls_url_as`]) and no
    /// plain TCP port; the unix socket (mode 700) stays for the test's own reads.
    pub tls: Option<Certificates>,
}

/// The user every ACL-started server adds for the test's own reads and checks (all keys, all
/// commands): never the one a service connects as.
pub const ADMIN_USER: &str = "test-admin";

/// The password a throwaway server gives `user`.
pub fn password_of(user: &str) -> String {
    format!("{user}-test-password")
}

/// `deploy/redis/<name>.acl` of the repository (`redis` for the grants, `redis-auth` for
/// auth-service's sign-ins).
pub fn acl_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/redis")
        .join(format!("{name}.acl"))
}

/// `acl` with each user's `@PASSWORD@` filled in, and [`ADMIN_USER`] added.
fn filled_acl(acl: &Path) -> std::io::Result<String> {
    let mut out = String::new();
    for line in std::fs::read_to_string(acl)?.lines() {
        let user = line.split_whitespace().nth(1).unwrap_or_default();
        out.push_str(&line.replace("@PASSWORD@", &password_of(user)));
        out.push('\n');
    }
    out.push_str(&format!(
        "user {ADMIN_USER} on >{} ~* &* +@all\n",
        password_of(ADMIN_USER)
    ));
    Ok(out)
}

/// A running `redis-server` that is killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    socket: PathBuf,
    port: Option<u16>,
    /// The TLS port, when started with `tls`.
    tls_port: Option<u16>,
    /// Started under an ACL file: [`RedisServer::url`] signs in as [`ADMIN_USER`].
    acl: bool,
    dir: PathBuf,
    // Held so the directory lives as long as the server; `None` when the caller owns `dir`.
    _tempdir: Option<tempfile::TempDir>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("socket", &self.socket)
            .field("port", &self.port)
            .finish()
    }
}

const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl RedisServer {
    /// Starts a private, non-persistent server on a unix socket in a fresh temp dir.
    pub fn start() -> Result<Self, RedisStartError> {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a private server with `options`.
    pub fn start_with(options: RedisOptions) -> Result<Self, RedisStartError> {
        let (tempdir, dir) = match options.dir.clone() {
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                (None, dir)
            }
            None => {
                let t = tempfile::Builder::new().prefix("redis-test-").tempdir()?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let socket = dir.join("redis.sock");
        let port = match (options.tcp, options.port) {
            (_, Some(p)) => Some(p),
            (true, None) => Some(free_port()?),
            (false, None) => None,
        };
        let (port, tls_port) = match options.tls {
            // A TLS-only server: the one TCP port speaks TLS.
            Some(_) => (None, Some(port.map_or_else(free_port, Ok)?)),
            None => (port, None),
        };

        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(port.unwrap_or(0).to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700"])
            .arg("--dir")
            .arg(&dir)
            .args(["--save", ""])
            .args(["--logfile", ""])
            .args(["--daemonize", "no"]);
        if let Some(acl) = &options.acl {
            let filled = dir.join("users.acl");
            std::fs::write(&filled, filled_acl(acl)?)?;
            cmd.arg("--aclfile").arg(filled);
        }
        if let (Some(certs), Some(tls_port)) = (&options.tls, tls_port) {
            cmd.arg("--tls-port")
                .arg(tls_port.to_string())
                .args(["--tls-cert-file", &certs.cert])
                .args(["--tls-key-file", &certs.key])
                .args(["--tls-ca-cert-file", &certs.ca])
                // Clients are authenticated by their users; a client certificate is optional.
                .args(["--tls-auth-clients", "optional"]);
        }
        if options.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.join("nodes.conf"));
        }
        if options.persistent {
            let fsync = if options.fsync_everysec {
                "everysec"
            } else {
                "always"
            };
            cmd.args(["--appendonly", "yes", "--appendfsync", fsync]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let child = spawn_tied_to_process(cmd).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RedisStartError::NotInstalled,
            _ => RedisStartError::Io(e),
        })?;
        let mut server = RedisServer {
            child: Some(child),
            socket,
            port,
            tls_port,
            acl: options.acl.is_some(),
            dir,
            _tempdir: tempdir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// `redis+unix:///…/redis.sock`, for `redis::Client::open`: the test's own connection
    /// (as [`ADMIN_USER`] under an ACL file).
    pub fn url(&self) -> String {
        match self.acl {
            true => self.url_as(ADMIN_USER),
            false => format!("redis+unix://{}", self.socket.display()),
        }
    }

    /// The unix socket as `user` (with [`password_of`] it).
    pub fn url_as(&self, user: &str) -> String {
        format!(
            "redis+unix://{}?user={user}&pass={}",
            self.socket.display(),
            password_of(user)
        )
    }

    /// `redis://127.0.0.1:PORT` when started with `tcp` (as [`ADMIN_USER`] under an ACL file).
    pub fn tcp_url(&self) -> Option<String> {
        match self.acl {
            true => self.tcp_url_as(ADMIN_USER),
            false => self.port.map(|p| format!("redis://127.0.0.1:{p}")),
        }
    }

    /// `redis://user:password@127.0.0.1:PORT` when started with `tcp`.
    pub fn tcp_url_as(&self, user: &str) -> Option<String> {
        self.port
            .map(|p| format!("redis://{user}:{}@127.0.0.1:{p}", password_of(user)))
    }

    /// `rediss://user:password@localhost:PORT` when started with `tls` (the certificate names
    /// `localhost`).
    pub fn tls_url_as(&self, user: &str) -> Option<String> {
        self.tls_port
            .map(|p| format!("rediss://{user}:{}@localhost:{p}", password_of(user)))
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The test's own connection ([`RedisServer::url`]).
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the test's Redis answers")
    }

    /// The keys that match `pattern` (`KEYS`: a test's own small database).
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut self.conn().await)
            .await
            .expect("KEYS answers")
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server at once (SIGKILL), as a crash would; the directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self) -> Result<(), RedisStartError> {
        // redis-server logs "ready to accept connections" once its listeners are bound (7.0 says
        // "...at <socket>" for a unix-only server, "Ready to accept connections tcp" otherwise);
        // reading its log is cheaper and more exact than polling with PING.
        let Some(stdout) = self.child.as_mut().and_then(|c| c.stdout.take()) else {
            return Ok(());
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                log.push_str(&line);
                log.push('\n');
                if line
                    .to_ascii_lowercase()
                    .contains("ready to accept connections")
                {
                    let _ = tx.send(Ok(()));
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
            let _ = tx.send(Err(log));
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(log)) => Err(RedisStartError::NotReady(READY_TIMEOUT, log)),
            Err(_) => Err(RedisStartError::NotReady(READY_TIMEOUT, String::new())),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on now, for a server that a test starts as its own process (Redis,
/// too, cannot report the port it bound for `--port 0`: one is reserved here and released just
/// before the server binds).
///
/// Chosen below Linux's ephemeral range (32768-60999): a port the kernel hands out for port 0 is
/// also what it hands out as the *source* port of outgoing connections, so between this call and
/// the server's bind, any test's client connection could take it ("Address already in use").
/// Below that range only another test's pick can collide, which the random start makes rare.
pub fn free_port() -> std::io::Result<u16> {
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Successive picks of one process step apart, so two ports asked for together differ.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = (nanos ^ std::process::id().rotate_left(16)).wrapping_add(call.wrapping_mul(7919))
        % u32::from(COUNT);
    for i in 0..u32::from(COUNT) {
        let port = FIRST + ((start + i) % u32::from(COUNT)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A local address that accepts TCP connections and then never reads or writes a byte, for as
/// long as the runtime runs: a server frozen behind a live kernel (`docker pause`), a wedged
/// process, or one whose answers are blackholed. Connecting succeeds; anything after it waits.
pub async fn silent_listener() -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Ok(addr)
}

/// Spawns `cmd` so that it dies with this process even if the test is killed before its guards
/// drop (`PR_SET_PDEATHSIG`): CI must not leave servers behind.
pub fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // The death signal fires when the *thread* that forked exits, not the process. Test
        // harnesses run each test on a short-lived thread, so fork from one thread that lives as
        // long as the process.
        static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<SpawnJob>>> =
            std::sync::OnceLock::new();
        type SpawnJob = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
        let spawner = SPAWNER.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
            std::thread::Builder::new()
                .name("test-support-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("spawner thread starts");
            std::sync::Mutex::new(tx)
        });
        #[allow(unsafe_code)]
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = std::sync::mpsc::channel();
        spawner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((cmd, reply_tx))
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
        reply_rx
            .recv()
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?
    }
    #[cfg(not(target_os = "linux"))]
    {
        cmd.spawn()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn ping(url: &str) -> redis::RedisResult<String> {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async(&mut conn).await
    }

    #[tokio::test]
    async fn starts_private_server_and_stops_it_on_drop() {
        let server = RedisServer::start().unwrap();
        let url = server.url();
        assert_eq!(ping(&url).await.unwrap(), "PONG");
        assert!(server.tcp_url().is_none(), "no TCP listener unless asked");
        let socket = server.socket_path().to_path_buf();
        drop(server);
        assert!(ping(&url).await.is_err(), "server must be gone after drop");
        assert!(!socket.exists());
    }

    #[tokio::test]
    async fn two_servers_do_not_share_state() {
        let a = RedisServer::start().unwrap();
        let b = RedisServer::start().unwrap();
        let mut ca = redis::Client::open(a.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut cb = redis::Client::open(b.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("a")
            .query_async(&mut ca)
            .await
            .unwrap();
        let got: Option<String> = redis::cmd("GET")
            .arg("k")
            .query_async(&mut cb)
            .await
            .unwrap();
        assert_eq!(got, None);
    }

    #[tokio::test]
    async fn three_master_cluster_serves_keys_on_every_slot() {
        let cluster = RedisCluster::start().unwrap();
        assert_eq!(cluster.urls().len(), 3);
        let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
        let mut c = client.get_async_connection().await.unwrap();
        for i in 0..50 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query_async(&mut c)
                .await
                .unwrap();
        }
        let got: i64 = redis::cmd("GET")
            .arg("k42")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(got, 42);
    }

    #[tokio::test]
    async fn persistent_server_keeps_data_across_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RedisOptions {
            tcp: true,
            persistent: true,
            dir: Some(dir.path().into()),
            ..RedisOptions::default()
        };
        let mut first = RedisServer::start_with(opts.clone()).unwrap();
        let port = first.port().unwrap();
        let mut c = redis::Client::open(first.tcp_url().unwrap())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut c)
            .await
            .unwrap();
        first.kill();
        let second = RedisServer::start_with(RedisOptions {
            port: Some(port),
            ..opts
        })
        .unwrap();
        let mut c = redis::Client::open(second.tcp_url().unwrap())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let got: Option<String> = redis::cmd("GET")
            .arg("k")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some("v"));
    }
}
