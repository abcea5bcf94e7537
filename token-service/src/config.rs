//! Typed settings for token-service, read from the environment and validated at start-up. Every
//! message names the variable at fault.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::bail;
use service_runtime::{
    config::Env,
    tls::{ExtraRoots, SNYK_CA_CERT},
};
use url::Url;

use caller_auth::ClientKeys;

use crate::{
    budget::{self, Rate},
    caller::Callers,
    client_secret::{self, ClientSecrets},
    keepalive::KeepAliveSettings,
    refresh::{BACKOFF_CAP, RefreshSettings},
    seal::Keyring,
    store::RedisTarget,
};

/// Where the gRPC server listens (the healthcheck and the operator CLI find it there too).
pub const ADDR_VAR: &str = "TOKEN_SERVICE_ADDR";
pub const DEFAULT_ADDR: &str = "0.0.0.0:50051";

/// How often a caller's demand may refresh an install (docs/design.md, "No spinning refreshes").
const MIN_REFRESH_INTERVAL_VAR: &str = "TOKEN_MIN_REFRESH_INTERVAL_SECONDS";
/// At most a minute: a ForceRefresh of a token that new waits for the interval, and a longer wait
/// would outlast callers' deadlines. 0 turns the rule off, for a test that needs a caller's
/// refresh at a given moment (`longevity::refresh_then_kill_redis`: right after the install).
const MAX_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Everything token-service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    /// PEM certificate chain and private key: serve gRPC over TLS when both are set.
    pub tls: Option<TlsFiles>,
    /// Where `GET /metrics` is served (Prometheus text).
    pub metrics_addr: SocketAddr,
    /// How long to keep serving after readiness turned off at shutdown.
    pub shutdown_drain: Duration,
    pub redis: RedisTarget,
    pub redis_timeout: Duration,
    pub snyk_api_url: Url,
    /// `SNYK_CA_CERT`: trusted for HTTPS to Snyk in addition to the platform's roots.
    pub snyk_ca: ExtraRoots,
    pub client_id: String,
    /// `SNYK_CLIENT_SECRET`: one secret, or two (the current first) during a rotation.
    pub client_secret: ClientSecrets,
    pub rest_version: String,
    pub keyring: Arc<Keyring>,
    /// `TOKEN_SERVICE_CLIENT_KEYS` and `TOKEN_SERVICE_CALLER_RPCS`: who may call what.
    pub callers: Arc<Callers>,
    /// `TOKEN_SERVICE_REFLECTION`: serve gRPC reflection (off by default: it maps the API for
    /// anyone who can connect, without a key).
    pub reflection: bool,
    pub refresh: RefreshSettings,
    pub keepalive: KeepAliveSettings,
    /// `TOKEN_REDIS_MIN_REPLICAS`: replicas that must confirm a durable write (`WAIT`).
    pub redis_min_replicas: u32,
    /// `TOKEN_CACHE_MAX_INSTALLS`: installs (and as many orgs) the grant cache holds at most;
    /// 0 turns the cache off.
    pub cache_capacity: usize,
    /// `TOKEN_CACHE_TRACKING`: keep the cache coherent with `CLIENT TRACKING` (Redis 6+). Off,
    /// for a Redis or proxy without it, the cache only stands in for Redis through an outage.
    pub cache_tracking: bool,
    /// `TOKEN_EVENTS_MAXLEN`: the lifecycle event stream is trimmed to about this many events.
    pub events_maxlen: u64,
    /// `TOKEN_AUDIT_INTERVAL_SECONDS`: repeated token hand-outs are written to the audit trail
    /// as one line per kind per interval; zero writes every hand-out at once.
    pub audit_interval: Duration,
    /// `SNYK_RATE_LIMIT_PER_MINUTE`: each install's Snyk REST requests per minute, over every
    /// replica of every service (`budget`).
    pub snyk_rate: Rate,
}

/// The server's certificate chain and key (PEM). The key is a secret: `Debug` hides it.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: secrecy::SecretSlice<u8>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert_bytes", &self.cert.len())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Env::new(get);
        let margin_secs: u64 = env.parse(
            "TOKEN_REFRESH_MARGIN_SECONDS",
            300,
            "a whole number of seconds",
        )?;
        let retries: u32 = env.parse("SNYK_TOKEN_RETRIES", 2, "a whole number")?;
        let seconds = |name: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs(env.parse(
                name,
                default,
                "a whole number of seconds",
            )?))
        };
        let refresh = RefreshSettings {
            margin: Duration::from_secs(margin_secs),
            min_validity: seconds("TOKEN_MIN_VALIDITY_SECONDS", 60)?,
            min_refresh_interval: seconds(MIN_REFRESH_INTERVAL_VAR, 5)?,
            in_doubt: seconds("TOKEN_REFRESH_IN_DOUBT_SECONDS", 120)?,
            lease_ttl: env.millis("TOKEN_REFRESH_LEASE_MS", 30_000)?,
            attempt_timeout: env.millis("SNYK_TOKEN_TIMEOUT_MS", 5_000)?,
            transient_retries: retries.min(10),
            backoff_base: env.millis("SNYK_TOKEN_BACKOFF_MS", 200)?,
            wait_timeout: Duration::ZERO,
            poll_interval: env.millis("TOKEN_REFRESH_POLL_MS", 25)?,
        };
        // Every attempt (retries plus the one lost-answer retry) must fit inside the lease, with
        // room for backoff and the final write, or a second holder could start while we wait.
        let budget = refresh.attempt_timeout * (refresh.transient_retries + 2)
            + BACKOFF_CAP * refresh.transient_retries
            + Duration::from_secs(1);
        if refresh.lease_ttl < budget {
            bail!(
                "TOKEN_REFRESH_LEASE_MS ({} ms) must be at least {} ms: SNYK_TOKEN_TIMEOUT_MS x (SNYK_TOKEN_RETRIES + 2) plus backoff",
                refresh.lease_ttl.as_millis(),
                budget.as_millis()
            );
        }
        if refresh.min_refresh_interval > MAX_MIN_REFRESH_INTERVAL {
            bail!(
                "{MIN_REFRESH_INTERVAL_VAR} ({} s) must be at most {} s: a ForceRefresh of a token newer than the interval waits for it",
                refresh.min_refresh_interval.as_secs(),
                MAX_MIN_REFRESH_INTERVAL.as_secs()
            );
        }
        if refresh.in_doubt < refresh.lease_ttl {
            bail!(
                "TOKEN_REFRESH_IN_DOUBT_SECONDS ({} s) must be at least the refresh lease (TOKEN_REFRESH_LEASE_MS, {} ms): a sender is given its whole lease and more",
                refresh.in_doubt.as_secs(),
                refresh.lease_ttl.as_millis()
            );
        }
        let keepalive = KeepAliveSettings {
            margin: seconds("TOKEN_KEEPALIVE_MARGIN_SECONDS", 604_800)?,
            interval: seconds("TOKEN_KEEPALIVE_INTERVAL_SECONDS", 60)?,
        };
        if keepalive.interval.is_zero() {
            bail!("TOKEN_KEEPALIVE_INTERVAL_SECONDS must be at least 1");
        }
        let refresh = RefreshSettings {
            wait_timeout: env.millis(
                "TOKEN_REFRESH_WAIT_MS",
                (refresh.lease_ttl * 2).as_millis() as u64,
            )?,
            ..refresh
        };
        let redis = service_runtime::redis::grants_target(&env)?;
        // The pair is checked as a server will use it (parsed, the key able to serve the
        // certificate), so a bad file stops start-up and `check-config` naming its variable, not
        // the first TLS handshake; tonic is then given the same PEM.
        service_runtime::tls::ServerTls::from_env(
            &env,
            "TOKEN_SERVICE_TLS_CERT",
            "TOKEN_SERVICE_TLS_KEY",
        )?;
        let tls = match (
            env.file("TOKEN_SERVICE_TLS_CERT")?,
            env.file("TOKEN_SERVICE_TLS_KEY")?,
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key: key.into(),
            }),
            (None, None) => None,
            _ => bail!("TOKEN_SERVICE_TLS_CERT and TOKEN_SERVICE_TLS_KEY must be set together"),
        };
        let client_keys = Arc::new(ClientKeys::parse(
            "TOKEN_SERVICE_CLIENT_KEYS",
            &env.required("TOKEN_SERVICE_CLIENT_KEYS")?,
        )?);
        let Some(rpcs_spec) = env.optional("TOKEN_SERVICE_CALLER_RPCS") else {
            bail!(
                "TOKEN_SERVICE_CALLER_RPCS must be set: `caller=Rpc+Rpc,…` (`*` = every RPC) for every caller of TOKEN_SERVICE_CLIENT_KEYS"
            );
        };
        let callers = Arc::new(Callers::parse(client_keys, &rpcs_spec)?);
        let events_maxlen: u64 = env.parse(
            "TOKEN_EVENTS_MAXLEN",
            crate::events::DEFAULT_MAXLEN,
            "a whole number of events",
        )?;
        if events_maxlen == 0 {
            bail!(
                "TOKEN_EVENTS_MAXLEN must be at least 1: the event stream keeps about this many events"
            );
        }
        Ok(Settings {
            tls,
            addr: env.addr(ADDR_VAR, DEFAULT_ADDR)?,
            metrics_addr: env.addr("TOKEN_SERVICE_METRICS_ADDR", "0.0.0.0:9464")?,
            shutdown_drain: env.millis_or_zero("SHUTDOWN_DRAIN_MS", 0)?,
            redis,
            redis_timeout: env.millis("REDIS_TIMEOUT_MS", 2_000)?,
            snyk_api_url: env.snyk_url("SNYK_API_URL", "https://api.snyk.io")?,
            snyk_ca: env.extra_roots(SNYK_CA_CERT)?,
            client_id: env.required("SNYK_CLIENT_ID")?,
            client_secret: ClientSecrets::parse(&env.required(client_secret::VAR)?)?,
            rest_version: env.var("SNYK_REST_VERSION", "2024-05-31"),
            keyring: Arc::new(Keyring::parse(&env.required("TOKEN_ENCRYPTION_KEYS")?)?),
            callers,
            reflection: env.parse("TOKEN_SERVICE_REFLECTION", false, "true or false")?,
            refresh,
            keepalive,
            redis_min_replicas: env.parse("TOKEN_REDIS_MIN_REPLICAS", 0, "a whole number")?,
            cache_capacity: env.parse(
                "TOKEN_CACHE_MAX_INSTALLS",
                crate::store::DEFAULT_CACHE_CAPACITY,
                "a whole number (0 turns the grant cache off)",
            )?,
            cache_tracking: env.parse("TOKEN_CACHE_TRACKING", true, "true or false")?,
            events_maxlen,
            audit_interval: seconds(
                "TOKEN_AUDIT_INTERVAL_SECONDS",
                crate::audit::DEFAULT_INTERVAL.as_secs(),
            )?,
            snyk_rate: Rate::per_minute(env.parse(
                "SNYK_RATE_LIMIT_PER_MINUTE",
                budget::DEFAULT_PER_MINUTE,
                "a whole number of requests per minute, at least 1",
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("SNYK_CLIENT_ID", "cid"),
        ("SNYK_CLIENT_SECRET", "the-client-secret"),
        (
            "TOKEN_ENCRYPTION_KEYS",
            "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
        (
            "TOKEN_SERVICE_CLIENT_KEYS",
            "projects-service=0123456789abcdef0123",
        ),
        (
            "TOKEN_SERVICE_CALLER_RPCS",
            "projects-service=GetAccessToken",
        ),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> anyhow::Result<Settings> {
        // Lookups take the first match, so the overrides go first.
        let mut pairs: Vec<(&str, &str)> = extra.to_vec();
        // Overridden keys get every RPC for each of their callers, unless the test sets grants:
        // every caller needs an entry in TOKEN_SERVICE_CALLER_RPCS.
        let grants: String;
        if let Some((_, keys)) = extra
            .iter()
            .find(|(k, _)| *k == "TOKEN_SERVICE_CLIENT_KEYS")
            && !extra.iter().any(|(k, _)| *k == "TOKEN_SERVICE_CALLER_RPCS")
        {
            grants = keys
                .split(',')
                .filter_map(|pair| Some(format!("{}=*", pair.split_once('=')?.0.trim())))
                .collect::<Vec<_>>()
                .join(",");
            pairs.push(("TOKEN_SERVICE_CALLER_RPCS", &grants));
        }
        pairs.extend_from_slice(MINIMAL);
        Settings::from_lookup(env(&pairs))
    }

    #[test]
    fn defaults_apply() {
        let s = with(&[]).expect("valid");
        assert_eq!(s.addr.port(), 50051);
        assert_eq!(s.refresh.margin, Duration::from_secs(300));
        assert_eq!(s.refresh.lease_ttl, Duration::from_secs(30));
        assert_eq!(s.refresh.wait_timeout, Duration::from_secs(60));
        assert_eq!(s.refresh.min_validity, Duration::from_secs(60));
        assert_eq!(s.refresh.min_refresh_interval, Duration::from_secs(5));
        assert_eq!(s.refresh.in_doubt, Duration::from_secs(120));
        assert_eq!(s.keepalive.margin, Duration::from_secs(604_800));
        assert_eq!(s.keepalive.interval, Duration::from_secs(60));
        assert_eq!(s.redis_min_replicas, 0);
        assert_eq!(s.events_maxlen, 100_000);
        assert_eq!(s.audit_interval, Duration::from_secs(60));
        assert_eq!(s.snyk_rate.get(), 1500);
        assert!(!s.reflection);
        assert_eq!(s.redis.to_string(), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn each_required_variable_is_named() {
        for (name, _) in MINIMAL {
            let pairs: Vec<_> = MINIMAL.iter().copied().filter(|(n, _)| n != name).collect();
            let err = Settings::from_lookup(env(&pairs)).expect_err("invalid");
            assert!(format!("{err:#}").contains(name), "{name}: {err:#}");
        }
    }

    #[test]
    fn tls_needs_both_files() {
        let err = with(&[("TOKEN_SERVICE_TLS_CERT", "/etc/hostname")]).expect_err("half TLS");
        assert!(err.to_string().contains("TOKEN_SERVICE_TLS_KEY"), "{err}");
        let err = with(&[
            ("TOKEN_SERVICE_TLS_CERT", "/no/such.pem"),
            ("TOKEN_SERVICE_TLS_KEY", "/no/such.key"),
        ])
        .expect_err("missing file");
        assert!(err.to_string().contains("TOKEN_SERVICE_TLS_CERT"), "{err}");
        // Files that exist but are no certificate and key: refused here, not at the first
        // handshake, naming the variable.
        let tmp = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
        std::fs::write(&cert, "not a certificate").expect("write");
        std::fs::write(&key, "not a key").expect("write");
        // `with` takes the test's static pairs.
        let leak = |p: &std::path::Path| -> &'static str { p.display().to_string().leak() };
        let err = with(&[
            ("TOKEN_SERVICE_TLS_CERT", leak(&cert)),
            ("TOKEN_SERVICE_TLS_KEY", leak(&key)),
        ])
        .expect_err("no usable pair");
        assert!(
            format!("{err:#}").contains("TOKEN_SERVICE_TLS_CERT"),
            "{err:#}"
        );
    }

    #[test]
    fn env_example_placeholders_are_refused() {
        let err = with(&[("SNYK_CLIENT_SECRET", "REPLACE-ME")]).expect_err("placeholder");
        assert!(err.to_string().contains("SNYK_CLIENT_SECRET"), "{err}");
    }

    #[test]
    fn demo_secrets_need_demo_mode_and_demo_mode_refuses_snyk() {
        // Every shipped demo value of this service, each refused on its own without DEMO_MODE.
        service_runtime::demo::testing::assert_shipped_values_need_demo_mode(
            &[
                ("SNYK_CLIENT_ID", "demo-client-id"),
                ("SNYK_CLIENT_SECRET", "demo-client-secret"),
                (
                    "TOKEN_ENCRYPTION_KEYS",
                    "demo:ZGVtby1vbmx5LXRva2VuLWtleS1OT1QtQS1TRUNSRVQ=",
                ),
                (
                    "TOKEN_SERVICE_CLIENT_KEYS",
                    "projects-service=demo-projects-to-token-key-not-secret",
                ),
                (
                    "TOKEN_SERVICE_CLIENT_KEYS",
                    "auth-service=demo-auth-to-token-key-not-secret",
                ),
            ],
            ("SNYK_API_URL", "http://fake-snyk:8090"),
            with,
        );
        for url in [
            "https://api.snyk.io",
            "https://api.eu.snyk.io",
            "https://api.snykgov.io",
            "https://snyk-proxy.corp.example",
        ] {
            let err = with(&[("DEMO_MODE", "true"), ("SNYK_API_URL", url)]).expect_err(url);
            let err = err.to_string();
            assert!(
                err.contains("SNYK_API_URL")
                    && err.contains("DEMO_MODE")
                    && err.contains("DEMO_SNYK_HOSTS"),
                "{err}"
            );
        }
        // Unset, SNYK_API_URL is Snyk's US host: demo mode must name the fake.
        let err = with(&[("DEMO_MODE", "true")]).expect_err("default URL");
        assert!(err.to_string().contains("SNYK_API_URL"), "{err}");
    }

    #[test]
    fn snyk_api_url_is_https_unless_loopback_or_demo() {
        let err = with(&[("SNYK_API_URL", "http://api.snyk.io")]).expect_err("plain http");
        assert!(err.to_string().contains("SNYK_API_URL"), "{err}");
        let err = with(&[("SNYK_API_URL", "http://fake-snyk:8090")]).expect_err("plain http");
        assert!(err.to_string().contains("SNYK_API_URL"), "{err}");
        for ok in [
            "http://127.0.0.1:8090",
            "http://localhost:1",
            "https://api.eu.snyk.io",
        ] {
            with(&[("SNYK_API_URL", ok)]).expect(ok);
        }
    }

    #[test]
    fn cluster_urls_select_cluster_mode() {
        let s = with(&[("REDIS_CLUSTER_URLS", "rediss://a:1, rediss://b:2")]).expect("valid");
        assert!(s.redis.is_cluster());
        assert_eq!(s.redis.to_string(), "rediss://a:1/0,rediss://b:2/0");
        let err = with(&[("REDIS_CLUSTER_URLS", "a:1")]).expect_err("invalid");
        assert!(err.to_string().contains("REDIS_CLUSTER_URLS"), "{err}");
    }

    #[test]
    fn lease_must_cover_the_attempts() {
        let err = with(&[("TOKEN_REFRESH_LEASE_MS", "5000")]).expect_err("invalid");
        assert!(err.to_string().contains("TOKEN_REFRESH_LEASE_MS"), "{err}");
        with(&[
            ("TOKEN_REFRESH_LEASE_MS", "5000"),
            ("SNYK_TOKEN_TIMEOUT_MS", "500"),
            ("SNYK_TOKEN_RETRIES", "1"),
        ])
        .expect("fits");
    }

    #[test]
    fn the_min_refresh_interval_is_at_most_a_minute() {
        for (v, secs) in [("0", 0), ("1", 1), ("60", 60)] {
            let s = with(&[("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", v)]).expect(v);
            assert_eq!(s.refresh.min_refresh_interval, Duration::from_secs(secs));
        }
        let err = with(&[("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "61")]).expect_err("61");
        assert!(
            err.to_string()
                .contains("TOKEN_MIN_REFRESH_INTERVAL_SECONDS (61 s) must be at most 60 s"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (k, v) in [
            ("TOKEN_SERVICE_ADDR", "nope"),
            ("SNYK_API_URL", "ftp://x"),
            ("TOKEN_REFRESH_MARGIN_SECONDS", "-1"),
            ("SNYK_TOKEN_TIMEOUT_MS", "0"),
            ("TOKEN_ENCRYPTION_KEYS", "k1:short"),
            ("TOKEN_SERVICE_CLIENT_KEYS", "nokey"),
            ("TOKEN_MIN_VALIDITY_SECONDS", "soon"),
            ("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "61"),
            ("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "-1"),
            ("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "1.5"),
            ("TOKEN_KEEPALIVE_MARGIN_SECONDS", "-5"),
            ("TOKEN_KEEPALIVE_INTERVAL_SECONDS", "0"),
            ("TOKEN_REFRESH_IN_DOUBT_SECONDS", "5"),
            ("TOKEN_REDIS_MIN_REPLICAS", "all"),
            ("TOKEN_SERVICE_REFLECTION", "maybe"),
            ("TOKEN_SERVICE_CALLER_RPCS", "projects-service=Everything"),
            ("TOKEN_EVENTS_MAXLEN", "0"),
            ("TOKEN_EVENTS_MAXLEN", "lots"),
        ] {
            let err = with(&[(k, v)]).expect_err(k);
            assert!(format!("{err:#}").contains(k), "{k}: {err:#}");
        }
    }

    #[test]
    fn snyk_ca_cert_is_optional_but_must_hold_a_certificate() {
        assert!(with(&[]).expect("valid").snyk_ca.is_empty());
        // A missing file, and one without a certificate (this crate's manifest), stop the start
        // with a message naming the variable and the file.
        for (path, why) in [
            ("/nonexistent/snyk-ca.pem", "cannot read"),
            ("Cargo.toml", "holds no certificate"),
        ] {
            let err = format!("{:#}", with(&[("SNYK_CA_CERT", path)]).expect_err(path));
            assert!(
                err.contains("SNYK_CA_CERT") && err.contains(path) && err.contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn caller_rpcs_are_parsed_and_checked_against_the_keys() {
        use crate::caller::Rpc;
        let s = with(&[
            (
                "TOKEN_SERVICE_CLIENT_KEYS",
                "projects-service=0123456789abcdef0123,ops=fedcba9876543210fedc",
            ),
            (
                "TOKEN_SERVICE_CALLER_RPCS",
                " projects-service = GetAccessToken + ForceRefresh , ops=* ",
            ),
            ("TOKEN_SERVICE_REFLECTION", "true"),
        ])
        .expect("valid");
        assert!(s.reflection);
        let dbg = format!("{:?}", s.callers);
        assert!(
            dbg.contains("\"projects-service\": {GetAccessToken, ForceRefresh}"),
            "{dbg}"
        );
        let ops = s.callers.admit(
            Rpc::DeleteInstall.path(),
            Some(b"Bearer fedcba9876543210fedc"),
        );
        assert_eq!(
            ops.map(|c| c.name().to_owned()).ok().as_deref(),
            Some("ops")
        );

        // Every caller with a key needs an entry, and every entry a key; both errors name it.
        let err = with(&[
            (
                "TOKEN_SERVICE_CLIENT_KEYS",
                "projects-service=0123456789abcdef0123,ops=fedcba9876543210fedc",
            ),
            ("TOKEN_SERVICE_CALLER_RPCS", "projects-service=*"),
        ])
        .expect_err("ops has no entry");
        assert!(
            format!("{err:#}").contains("TOKEN_SERVICE_CALLER_RPCS")
                && format!("{err:#}").contains("\"ops\""),
            "{err:#}"
        );
        let err = with(&[("TOKEN_SERVICE_CALLER_RPCS", "projects-service=*,ghost=*")])
            .expect_err("ghost has no key");
        assert!(format!("{err:#}").contains("\"ghost\""), "{err:#}");
        let err = with(&[("TOKEN_SERVICE_CALLER_RPCS", "projects-service=GetToken")])
            .expect_err("unknown RPC");
        assert!(format!("{err:#}").contains("\"GetToken\""), "{err:#}");
    }

    #[test]
    fn the_client_secret_is_one_or_two_and_may_come_from_a_file() {
        assert_eq!(with(&[]).expect("valid").client_secret.len(), 1);
        let two = with(&[("SNYK_CLIENT_SECRET", "new-secret,old-secret")]).expect("two");
        assert_eq!(two.client_secret.len(), 2);
        for bad in ["a,b,c", "new-secret,", "dup-s3cret,dup-s3cret"] {
            let err = format!("{:#}", with(&[("SNYK_CLIENT_SECRET", bad)]).expect_err(bad));
            assert!(err.contains("SNYK_CLIENT_SECRET"), "{bad}: {err}");
            assert!(
                !err.contains("s3cret") && !err.contains("new-secret"),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("client-secret");
        std::fs::write(&file, "from-file-new,from-file-old\n").expect("write");
        // `with` takes 'static pairs; a test may leak one path.
        let path: &'static str = Box::leak(file.display().to_string().into_boxed_str());
        // MINIMAL sets SNYK_CLIENT_SECRET: the file alone stands in for it (lookups take the
        // first match, so an empty value goes first).
        let s = with(&[
            ("SNYK_CLIENT_SECRET", ""),
            ("SNYK_CLIENT_SECRET_FILE", path),
        ])
        .expect("from the file");
        assert_eq!(s.client_secret.len(), 2);
        let err = format!(
            "{:#}",
            with(&[("SNYK_CLIENT_SECRET_FILE", path)]).expect_err("both")
        );
        assert!(
            err.contains("SNYK_CLIENT_SECRET and SNYK_CLIENT_SECRET_FILE are both set"),
            "{err}"
        );
    }

    #[test]
    fn a_caller_may_hold_two_keys_but_not_three() {
        let s = with(&[
            (
                "TOKEN_SERVICE_CLIENT_KEYS",
                "projects-service=0123456789abcdef0123,projects-service=new-0123456789abcdef",
            ),
            (
                "TOKEN_SERVICE_CALLER_RPCS",
                "projects-service=GetAccessToken",
            ),
        ])
        .expect("two keys");
        let path = crate::caller::Rpc::GetAccessToken.path();
        for key in ["0123456789abcdef0123", "new-0123456789abcdef"] {
            let header = format!("Bearer {key}");
            assert!(
                s.callers.admit(path, Some(header.as_bytes())).is_ok(),
                "{key}"
            );
        }
        let err = with(&[
            (
                "TOKEN_SERVICE_CLIENT_KEYS",
                "projects-service=0123456789abcdef0123,projects-service=new-0123456789abcdef,projects-service=third-0123456789abcd",
            ),
            ("TOKEN_SERVICE_CALLER_RPCS", "projects-service=GetAccessToken"),
        ])
        .expect_err("three keys");
        let err = format!("{err:#}");
        assert!(
            err.contains("TOKEN_SERVICE_CLIENT_KEYS") && err.contains("\"projects-service\""),
            "{err}"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let dbg = format!("{:?}", with(&[]).expect("valid"));
        assert!(
            !dbg.contains("the-client-secret") && !dbg.contains("0123456789abcdef0123"),
            "{dbg}"
        );
        assert!(!dbg.contains("AAECAwQF"), "{dbg}");
    }
}
