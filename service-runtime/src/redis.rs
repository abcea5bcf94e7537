//! How a service reaches Redis, in one place: one server or a cluster's nodes, plain or over TLS
//! (`rediss://`, with extra roots in `REDIS_CA_CERT` and a client certificate in
//! `REDIS_CLIENT_CERT`/`REDIS_CLIENT_KEY`), a user and password in the URL or the password in a
//! file; and never printed with its password (`Debug` and `Display` show `user:***@host`).
//!
//! Every connection a service opens (the main one, the grant cache's RESP3 tracking connection,
//! an event reader, each cluster node) is built from one [`RedisTarget`], so TLS and credentials
//! cannot be forgotten on one of them. Host names are always verified: a URL that asks not to
//! (`rediss://…/#insecure`) is refused, and the redis crate is built without the feature that
//! would allow it.

use std::{fmt, sync::Arc};

use anyhow::bail;
use redis::{
    ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion,
    TlsCertificates,
};

use crate::{config::Env, demo, internal::InternalHops};

/// PEM file of roots trusted for `rediss://` in addition to the platform's.
pub const REDIS_CA_CERT: &str = "REDIS_CA_CERT";
/// PEM certificate (chain) presented to a Redis server that requires client certificates.
pub const REDIS_CLIENT_CERT: &str = "REDIS_CLIENT_CERT";
/// PEM private key of [`REDIS_CLIENT_CERT`].
pub const REDIS_CLIENT_KEY: &str = "REDIS_CLIENT_KEY";

/// Which variables name one service's Redis: its URL (and default), the optional list of
/// cluster nodes, and the file that may hold the password.
#[derive(Debug, Clone, Copy)]
pub struct RedisVars {
    pub url: &'static str,
    pub default_url: &'static str,
    pub cluster_urls: Option<&'static str>,
    pub password_file: &'static str,
}

/// token-service's Redis: the grants.
pub const GRANTS: RedisVars = RedisVars {
    url: "REDIS_URL",
    default_url: "redis://127.0.0.1:6379",
    cluster_urls: Some("REDIS_CLUSTER_URLS"),
    password_file: "REDIS_PASSWORD_FILE",
};

/// auth-service's own Redis: pending sign-ins.
pub const AUTH: RedisVars = RedisVars {
    url: "AUTH_REDIS_URL",
    default_url: "",
    cluster_urls: None,
    password_file: "AUTH_REDIS_PASSWORD_FILE",
};

/// auth-service's Redis: `AUTH_REDIS_URL`, required outside demo mode (the demo may share
/// `REDIS_URL`), and never the grants' database when both are set.
/// Returns the variable it came from too, for errors.
pub fn auth_target(env: &Env<'_>) -> anyhow::Result<(&'static str, RedisTarget)> {
    if env.optional(AUTH.url).is_some() {
        let target = RedisTarget::from_env(env, AUTH)?;
        refuse_shared(env, &target, None)?;
        return Ok((AUTH.url, target));
    }
    if !env.demo_mode()? {
        bail!(
            "{} must be set: auth-service keeps its sign-ins in a Redis of its own, never the grants' ({})",
            AUTH.url,
            GRANTS.url
        );
    }
    let target = RedisTarget::from_env(
        env,
        RedisVars {
            cluster_urls: None,
            ..GRANTS
        },
    )?;
    Ok((GRANTS.url, target))
}

/// token-service's Redis (`REDIS_URL` or `REDIS_CLUSTER_URLS`), refused when it is the database
/// `AUTH_REDIS_URL` names.
pub fn grants_target(env: &Env<'_>) -> anyhow::Result<RedisTarget> {
    let target = RedisTarget::from_env(env, GRANTS)?;
    if env.optional(AUTH.url).is_some() {
        refuse_shared(env, &RedisTarget::from_env(env, AUTH)?, Some(&target))?;
    }
    Ok(target)
}

/// Refuses `auth` when it is the grants' database (`REDIS_URL`/`REDIS_CLUSTER_URLS`, when set in
/// the same environment; `grants` when already read): the internet-facing service must hold no
/// way into the grants.
fn refuse_shared(
    env: &Env<'_>,
    auth: &RedisTarget,
    grants: Option<&RedisTarget>,
) -> anyhow::Result<()> {
    let grants_set = GRANTS
        .cluster_urls
        .is_some_and(|k| env.optional(k).is_some())
        || env.optional(GRANTS.url).is_some();
    if !grants_set {
        return Ok(());
    }
    let read;
    let grants = match grants {
        Some(g) => g,
        None => {
            read = RedisTarget::from_env(env, GRANTS)?;
            &read
        }
    };
    if auth.shares_database_with(grants) {
        bail!(
            "{} names the grants' Redis ({}: same host, port and database): auth-service must have a Redis of its own",
            AUTH.url,
            GRANTS.url
        );
    }
    Ok(())
}

/// Where a service's Redis is and how to reach it. Built only by parsing
/// ([`RedisTarget::from_env`], [`RedisTarget::parse`]), so every node has the same scheme,
/// credentials and database.
#[derive(Clone)]
pub struct RedisTarget {
    /// One server, or a cluster's initial nodes.
    nodes: Vec<ConnectionInfo>,
    cluster: bool,
    /// `Some` when `REDIS_CA_CERT` or a client certificate is set (only with `rediss://`).
    tls: Option<Arc<TlsFiles>>,
    /// Plain `redis://` to another host that `INTERNAL_PLAINTEXT=allow` let through (a mesh
    /// encrypts it), said once at start-up by [`RedisTarget::warn_plaintext`].
    hops: Option<InternalHops>,
}

/// The PEM bytes the redis crate takes: the roots (the platform's and `REDIS_CA_CERT`'s, since
/// the crate replaces rather than extends its roots when given some) and the client pair.
struct TlsFiles {
    roots: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.roots.clone(),
        }
    }
}

impl RedisTarget {
    /// Reads the Redis of `vars`: the cluster list when set (`REDIS_CLUSTER_URLS`), else the URL
    /// (its default when unset), the password file, and the shared TLS files. Each error names
    /// its variable and never repeats a password.
    pub fn from_env(env: &Env<'_>, vars: RedisVars) -> anyhow::Result<Self> {
        let (var, urls) = match vars.cluster_urls.and_then(|k| Some((k, env.optional(k)?))) {
            Some((k, list)) => (
                k,
                list.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
            None => (vars.url, vec![env.var(vars.url, vars.default_url)]),
        };
        if urls.is_empty() || urls.iter().all(|u| u.trim().is_empty()) {
            bail!("{var} must be set");
        }
        let mut infos = urls
            .iter()
            .enumerate()
            .map(|(i, u)| parse_node(var, i, urls.len(), u))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The password file is read as every secret file is (`Env::required` of its `_FILE`:
        // trimmed, no placeholder, no demo value outside demo mode); only the file form is
        // offered, a password in the environment belongs in the URL.
        if env.optional(vars.password_file).is_some() {
            let secret = vars
                .password_file
                .strip_suffix(crate::config::FILE_SUFFIX)
                .unwrap_or(vars.password_file);
            let password = env.required(secret)?;
            if infos
                .iter()
                .any(|i| i.redis_settings().password().is_some())
            {
                bail!(
                    "{var} carries a password and {} names one too: give it one way",
                    vars.password_file
                );
            }
            infos = infos
                .into_iter()
                .map(|i| {
                    let settings = i.redis_settings().clone().set_password(&password);
                    i.set_redis_settings(settings)
                })
                .collect();
        }
        let password = infos.first().and_then(|i| i.redis_settings().password());
        if password.is_some_and(|p| p.contains(crate::config::PLACEHOLDER)) {
            bail!(
                "the Redis password of {var} still holds the {} placeholder from .env.example",
                crate::config::PLACEHOLDER
            );
        }
        if password.is_some_and(crate::demo::is_shipped) && !env.demo_mode().unwrap_or(false) {
            bail!(
                "the Redis password of {var} is a demo value published in docker-compose.yml, refused unless {}=true",
                crate::demo::DEMO_MODE
            );
        }
        let cluster = vars.cluster_urls == Some(var);
        if cluster {
            check_same_settings(var, &infos)?;
        }
        // Outside demo mode, the password and every record must not cross a network in clear.
        let mut hops = InternalHops::from_env(env)?;
        for info in &infos {
            if let ConnectionAddr::Tcp(host, _) = info.addr()
                && !demo::is_loopback_host(host)
            {
                hops.plain_hop(var, "redis://", host)?;
            }
        }
        let tls = TlsFiles::from_env(env)?;
        let plaintext = hops.plaintext().next().is_some();
        let target = RedisTarget {
            nodes: infos,
            cluster,
            tls: tls.map(Arc::new),
            hops: plaintext.then_some(hops),
        };
        if target.tls.is_some() && !target.is_tls() {
            bail!(
                "{REDIS_CA_CERT}, {REDIS_CLIENT_CERT} and {REDIS_CLIENT_KEY} apply to rediss:// only, and {var} is not rediss://"
            );
        }
        Ok(target)
    }

    /// One server at `url`, with the platform's roots only: for tests and tools.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        Ok(RedisTarget {
            nodes: vec![parse_node("the Redis URL", 0, 1, url)?],
            cluster: false,
            tls: None,
            hops: None,
        })
    }

    /// A cluster of `urls`, with the platform's roots only: for tests and tools.
    pub fn parse_cluster(urls: &[String]) -> anyhow::Result<Self> {
        let infos = urls
            .iter()
            .enumerate()
            .map(|(i, u)| parse_node("the Redis URL", i, urls.len(), u))
            .collect::<anyhow::Result<Vec<_>>>()?;
        check_same_settings("the Redis URLs", &infos)?;
        Ok(RedisTarget {
            nodes: infos,
            cluster: true,
            tls: None,
            hops: None,
        })
    }

    /// One warning per plain-text node `INTERNAL_PLAINTEXT=allow` let through: at start-up, so
    /// the operator's choice is on record in every replica's log.
    pub fn warn_plaintext(&self) {
        if let Some(hops) = &self.hops {
            hops.warn_plaintext();
        }
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Does every connection speak TLS?
    pub fn is_tls(&self) -> bool {
        self.nodes
            .iter()
            .all(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }))
    }

    /// A client of the one server (RESP2, or RESP3 where push messages are needed); an error
    /// for a cluster, which has [`RedisTarget::cluster_builder`].
    pub fn client(&self, protocol: ProtocolVersion) -> redis::RedisResult<redis::Client> {
        let [info] = self.nodes.as_slice() else {
            return Err(not_this_kind("a Redis Cluster has no single-server client"));
        };
        if self.cluster {
            return Err(not_this_kind("a Redis Cluster has no single-server client"));
        }
        let settings = info.redis_settings().clone().set_protocol(protocol);
        let info = info.clone().set_redis_settings(settings);
        match &self.tls {
            Some(tls) => redis::Client::build_with_tls(info, tls.certificates()),
            None => redis::Client::open(info),
        }
    }

    /// A builder for a client of the cluster's nodes, TLS and credentials set; an error for a
    /// single server, which has [`RedisTarget::client`].
    pub fn cluster_builder(&self) -> redis::RedisResult<redis::cluster::ClusterClientBuilder> {
        if !self.cluster {
            return Err(not_this_kind("a single Redis server has no cluster client"));
        }
        let builder = redis::cluster::ClusterClient::builder(self.nodes.clone());
        Ok(match &self.tls {
            Some(tls) => builder.certs(tls.certificates()),
            None => builder,
        })
    }

    /// Is `other` the same server and database (any node in common, for a cluster)? The user
    /// and the scheme do not count: two users of one database still share every key.
    pub fn shares_database_with(&self, other: &RedisTarget) -> bool {
        self.nodes.iter().any(|a| {
            other.nodes.iter().any(|b| {
                endpoint(a.addr()) == endpoint(b.addr())
                    && a.redis_settings().db() == b.redis_settings().db()
            })
        })
    }
}

fn not_this_kind(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, what))
}

/// Host (or socket path) and port, whatever the scheme.
fn endpoint(addr: &ConnectionAddr) -> (String, u16) {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.to_ascii_lowercase(), *port)
        }
        ConnectionAddr::Unix(path) => (path.display().to_string(), 0),
        // The enum is non-exhaustive; a new kind is never "the same" as anything.
        #[allow(unreachable_patterns)]
        _ => (String::new(), 0),
    }
}

/// Parses entry `i` of `n` of `var`: redis://, rediss:// or redis+unix://, without a fragment
/// (`#insecure` would turn off the host name check). Errors never repeat the URL.
fn parse_node(var: &str, i: usize, n: usize, raw: &str) -> anyhow::Result<ConnectionInfo> {
    let which = if n > 1 {
        format!("{var} (entry {})", i + 1)
    } else {
        var.to_owned()
    };
    let raw = raw.trim();
    if raw.contains('#') {
        bail!(
            "{which} must not have a #fragment (#insecure would turn off the check of the server's name, which is always on)"
        );
    }
    let info = raw.into_connection_info().map_err(|_| {
        anyhow::anyhow!("{which} is not a valid Redis URL (redis://, rediss:// or redis+unix://)")
    })?;
    if let ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
        bail!("{which} turns off the check of the server's name, which is always on");
    }
    Ok(info)
}

/// A cluster's nodes share one scheme, user, password and database.
fn check_same_settings(var: &str, infos: &[ConnectionInfo]) -> anyhow::Result<()> {
    let Some(first) = infos.first() else {
        bail!("{var} must list at least one node");
    };
    let same = |i: &ConnectionInfo| {
        let (a, b) = (i.redis_settings(), first.redis_settings());
        a.username() == b.username()
            && a.password() == b.password()
            && a.db() == b.db()
            && matches!(i.addr(), ConnectionAddr::TcpTls { .. })
                == matches!(first.addr(), ConnectionAddr::TcpTls { .. })
            && !matches!(i.addr(), ConnectionAddr::Unix(_))
    };
    if !infos.iter().all(same) {
        bail!(
            "{var}: every node must be redis:// or rediss:// to host:port, with the same scheme, user, password and database"
        );
    }
    Ok(())
}

impl TlsFiles {
    fn from_env(env: &Env<'_>) -> anyhow::Result<Option<Self>> {
        let roots = match env.named_file(REDIS_CA_CERT)? {
            Some((path, pem)) => {
                // Checked as a trust anchor now, so a bad file stops the start with its name.
                crate::tls::certificates(REDIS_CA_CERT, &path, &pem)?;
                Some(with_platform_roots(&pem))
            }
            None => None,
        };
        let client = match (
            env.named_file(REDIS_CLIENT_CERT)?,
            env.named_file(REDIS_CLIENT_KEY)?,
        ) {
            (Some((cert_path, cert)), Some((key_path, key))) => {
                crate::tls::certificates(REDIS_CLIENT_CERT, &cert_path, &cert)?;
                crate::tls::private_key(REDIS_CLIENT_KEY, &key_path, &key)?;
                Some((cert, key))
            }
            (None, None) => None,
            _ => {
                bail!("{REDIS_CLIENT_CERT} and {REDIS_CLIENT_KEY} go together: set both or neither")
            }
        };
        Ok((roots.is_some() || client.is_some()).then_some(TlsFiles { roots, client }))
    }
}

/// The platform's roots (as the redis crate loads them when given none) followed by `extra`, as
/// one PEM bundle.
fn with_platform_roots(extra: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let mut bundle = pem.into_bytes();
    bundle.extend_from_slice(extra);
    bundle
}

impl fmt::Display for RedisTarget {
    /// `rediss://user:***@host:port/db` (each node, comma-separated): never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, info) in self.nodes.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            let settings = info.redis_settings();
            let (scheme, place) = match info.addr() {
                ConnectionAddr::Tcp(host, port) => ("redis", format!("{host}:{port}")),
                ConnectionAddr::TcpTls { host, port, .. } => ("rediss", format!("{host}:{port}")),
                ConnectionAddr::Unix(path) => ("redis+unix", path.display().to_string()),
                #[allow(unreachable_patterns)]
                _ => ("redis", "?".to_owned()),
            };
            write!(f, "{scheme}://")?;
            match (settings.username(), settings.password()) {
                (Some(user), Some(_)) => write!(f, "{user}:***@")?,
                (Some(user), None) => write!(f, "{user}@")?,
                (None, Some(_)) => f.write_str(":***@")?,
                (None, None) => {}
            }
            write!(f, "{place}/{}", settings.db())?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RedisTarget({self}{})",
            if self.tls.is_some() {
                ", own TLS files"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: Vec<(&'static str, String)>) -> Env<'static> {
        Env::new(move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn a_password_is_never_printed() {
        for url in [
            "rediss://token-service:s3cret-pw@redis.internal:6380/2",
            "redis://:s3cret-pw@127.0.0.1:6379",
        ] {
            let t = RedisTarget::parse(url).unwrap();
            for shown in [format!("{t}"), format!("{t:?}"), format!("{t:#?}")] {
                assert!(!shown.contains("s3cret"), "{shown}");
                assert!(shown.contains("***"), "{shown}");
            }
        }
        let t =
            RedisTarget::parse("rediss://token-service:s3cret-pw@redis.internal:6380/2").unwrap();
        assert_eq!(
            t.to_string(),
            "rediss://token-service:***@redis.internal:6380/2"
        );
    }

    #[test]
    fn a_password_file_fills_the_password_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file-pw\n").unwrap();
        let e = env(vec![
            ("REDIS_URL", "rediss://token-service@redis:6380".into()),
            ("REDIS_PASSWORD_FILE", file.display().to_string()),
        ]);
        let t = RedisTarget::from_env(&e, GRANTS).unwrap();
        let info = &t.nodes[0];
        assert_eq!(info.redis_settings().password(), Some("from-file-pw"));
        assert_eq!(info.redis_settings().username(), Some("token-service"));
        assert!(!format!("{t:?}").contains("from-file"));

        let both = env(vec![
            (
                "REDIS_URL",
                "rediss://token-service:url-pw@redis:6380".into(),
            ),
            ("REDIS_PASSWORD_FILE", file.display().to_string()),
        ]);
        let err = format!("{:#}", RedisTarget::from_env(&both, GRANTS).unwrap_err());
        assert!(
            err.contains("REDIS_PASSWORD_FILE") && err.contains("REDIS_URL"),
            "{err}"
        );
        assert!(
            !err.contains("url-pw") && !err.contains("from-file"),
            "{err}"
        );

        let missing = env(vec![("REDIS_PASSWORD_FILE", "/nonexistent/pw".into())]);
        let err = format!("{:#}", RedisTarget::from_env(&missing, GRANTS).unwrap_err());
        assert!(err.contains("REDIS_PASSWORD_FILE"), "{err}");
    }

    #[test]
    fn plain_redis_to_another_host_needs_demo_mode_or_a_mesh() {
        let remote = || {
            (
                "REDIS_URL",
                "redis://token-service:pw-9f3@redis.internal:6379".into(),
            )
        };
        let err = format!(
            "{:#}",
            RedisTarget::from_env(&env(vec![remote()]), GRANTS).unwrap_err()
        );
        assert!(
            err.contains("REDIS_URL") && err.contains("INTERNAL_PLAINTEXT"),
            "{err}"
        );
        assert!(!err.contains("pw-9f3"), "{err}");
        let mesh = env(vec![remote(), ("INTERNAL_PLAINTEXT", "allow".into())]);
        assert!(RedisTarget::from_env(&mesh, GRANTS).unwrap().hops.is_some());
        let demo = env(vec![remote(), ("DEMO_MODE", "true".into())]);
        assert!(RedisTarget::from_env(&demo, GRANTS).unwrap().hops.is_none());
        for local in [
            "redis://127.0.0.1:6379",
            "redis://localhost:6379",
            "redis://[::1]:6379",
            "redis+unix:///run/redis.sock",
            "rediss://redis.internal:6380",
        ] {
            RedisTarget::from_env(&env(vec![("REDIS_URL", local.into())]), GRANTS).unwrap();
        }
    }

    #[test]
    fn the_placeholder_is_no_password() {
        let e = env(vec![(
            "REDIS_URL",
            "redis://token-service:REPLACE-ME@redis:6379".into(),
        )]);
        let err = format!("{:#}", RedisTarget::from_env(&e, GRANTS).unwrap_err());
        assert!(
            err.contains("REDIS_URL") && err.contains("placeholder"),
            "{err}"
        );
    }

    #[test]
    fn the_published_demo_password_runs_in_demo_mode_only() {
        let url = "redis://token-service:demo-token-service-redis-password-not-secret@redis:6379";
        let err = format!(
            "{:#}",
            RedisTarget::from_env(&env(vec![("REDIS_URL", url.into())]), GRANTS).unwrap_err()
        );
        assert!(
            err.contains("REDIS_URL") && err.contains("DEMO_MODE"),
            "{err}"
        );
        assert!(!err.contains("demo-token-service"), "{err}");
        let demo = env(vec![
            ("REDIS_URL", url.into()),
            ("DEMO_MODE", "true".into()),
        ]);
        RedisTarget::from_env(&demo, GRANTS).unwrap();
    }

    #[test]
    fn host_name_checks_cannot_be_turned_off() {
        let e = env(vec![(
            "REDIS_URL",
            "rediss://u:s3cret@redis:6380/#insecure".into(),
        )]);
        let err = format!("{:#}", RedisTarget::from_env(&e, GRANTS).unwrap_err());
        assert!(
            err.contains("REDIS_URL") && err.contains("always on"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn bad_urls_name_their_variable_without_repeating_them() {
        let e = env(vec![
            (
                "REDIS_CLUSTER_URLS",
                "redis://a:1,http://:s3cret@b:2".into(),
            ),
            ("AUTH_REDIS_URL", "nonsense://:s3cret@x".into()),
        ]);
        let err = format!("{:#}", RedisTarget::from_env(&e, GRANTS).unwrap_err());
        assert!(err.contains("REDIS_CLUSTER_URLS (entry 2)"), "{err}");
        let err = format!("{:#}", RedisTarget::from_env(&e, AUTH).unwrap_err());
        assert!(err.contains("AUTH_REDIS_URL"), "{err}");
        for err in [
            format!("{:#}", RedisTarget::from_env(&e, GRANTS).unwrap_err()),
            format!("{:#}", RedisTarget::from_env(&e, AUTH).unwrap_err()),
        ] {
            assert!(!err.contains("s3cret"), "{err}");
        }
        let mixed = env(vec![(
            "REDIS_CLUSTER_URLS",
            "rediss://a:1,redis://b:2".into(),
        )]);
        let err = format!("{:#}", RedisTarget::from_env(&mixed, GRANTS).unwrap_err());
        assert!(err.contains("same scheme"), "{err}");
    }

    #[test]
    fn tls_files_need_rediss_and_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, include_bytes!("../testdata/two-cas.pem")).unwrap();
        let plain = env(vec![
            ("REDIS_URL", "redis://127.0.0.1:6379".into()),
            ("REDIS_CA_CERT", ca.display().to_string()),
        ]);
        let err = format!("{:#}", RedisTarget::from_env(&plain, GRANTS).unwrap_err());
        assert!(
            err.contains("REDIS_CA_CERT") && err.contains("rediss://"),
            "{err}"
        );
        let tls = env(vec![
            ("REDIS_URL", "rediss://redis:6380".into()),
            ("REDIS_CA_CERT", ca.display().to_string()),
        ]);
        let t = RedisTarget::from_env(&tls, GRANTS).unwrap();
        assert!(t.is_tls() && t.tls.is_some());
        let half = env(vec![
            ("REDIS_URL", "rediss://redis:6380".into()),
            ("REDIS_CLIENT_CERT", ca.display().to_string()),
        ]);
        let err = format!("{:#}", RedisTarget::from_env(&half, GRANTS).unwrap_err());
        assert!(err.contains("REDIS_CLIENT_KEY"), "{err}");
    }

    #[test]
    fn auth_service_gets_its_own_redis_outside_demo_mode() {
        let err = format!("{:#}", auth_target(&env(vec![])).unwrap_err());
        assert!(err.contains("AUTH_REDIS_URL must be set"), "{err}");
        let demo = env(vec![
            ("DEMO_MODE", "true".into()),
            ("REDIS_URL", "redis://grants:6379".into()),
        ]);
        let (var, target) = auth_target(&demo).unwrap();
        assert_eq!(
            (var, target.to_string().as_str()),
            ("REDIS_URL", "redis://grants:6379/0")
        );
        let own = env(vec![
            ("REDIS_URL", "rediss://grants:6379".into()),
            (
                "AUTH_REDIS_URL",
                "rediss://auth-service:pw-9f3@browser:6379".into(),
            ),
        ]);
        let (var, target) = auth_target(&own).unwrap();
        assert_eq!(
            (var, target.to_string().as_str()),
            ("AUTH_REDIS_URL", "rediss://auth-service:***@browser:6379/0")
        );
        grants_target(&own).unwrap();
        for shared in [
            env(vec![
                (
                    "REDIS_URL",
                    "rediss://token-service:pw-9f3@redis:6380/0".into(),
                ),
                (
                    "AUTH_REDIS_URL",
                    "rediss://auth-service:pw-9f3@REDIS:6380".into(),
                ),
            ]),
            env(vec![
                ("DEMO_MODE", "true".into()),
                (
                    "REDIS_CLUSTER_URLS",
                    "redis://n1:7000,redis://n2:7001".into(),
                ),
                ("AUTH_REDIS_URL", "redis://n2:7001".into()),
            ]),
        ] {
            for err in [
                auth_target(&shared).unwrap_err(),
                grants_target(&shared).unwrap_err(),
            ] {
                let err = format!("{err:#}");
                assert!(
                    err.contains("AUTH_REDIS_URL") && err.contains("own"),
                    "{err}"
                );
                assert!(!err.contains("pw-9f3"), "{err}");
            }
        }
    }

    #[test]
    fn the_same_database_is_recognised_whoever_the_user() {
        let a = RedisTarget::parse("redis://token-service:x@Redis:6379/0").unwrap();
        let b = RedisTarget::parse("rediss://auth-service:y@redis:6379").unwrap();
        let other_db = RedisTarget::parse("redis://redis:6379/1").unwrap();
        let other_host = RedisTarget::parse("redis://redis-auth:6379/0").unwrap();
        assert!(a.shares_database_with(&b));
        assert!(!a.shares_database_with(&other_db));
        assert!(!a.shares_database_with(&other_host));
        let cluster =
            RedisTarget::parse_cluster(&["redis://n1:7000".into(), "redis://redis:6379".into()])
                .unwrap();
        assert!(cluster.shares_database_with(&a));
    }
}
