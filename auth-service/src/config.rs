//! Typed settings for auth-service, read from the environment and validated at start-up. Every
//! error names the variable at fault, and no secret value ever appears in an error or in `Debug`.

use std::{fmt, net::SocketAddr, num::NonZeroU32, time::Duration};

use actix_web::cookie::Key;
use anyhow::bail;
use base64::Engine as _;
use secrecy::SecretString;
use service_runtime::{
    config::Env,
    grpc::TokenServiceUrls,
    internal::{InternalCa, InternalHops},
    redis::RedisTarget,
};
use url::Url;

/// Everything auth-service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    /// Where `/metrics` is served (`AUTH_SERVICE_METRICS_ADDR`), apart from the public port.
    pub metrics_addr: SocketAddr,
    /// Snyk's app host (the consent page lives there).
    pub snyk_app_url: Url,
    pub client_id: String,
    /// Where Snyk sends the browser back: this service's `/callback`, exactly as registered.
    pub redirect_uri: Url,
    /// Space-separated scopes to ask for; `None` lets Snyk grant the app's configured scopes.
    pub scopes: Option<String>,
    /// `TOKEN_SERVICE_URL`: one token-service, or replicas that calls are spread over.
    pub token_service_urls: TokenServiceUrls,
    pub token_service_api_key: SecretString,
    /// `TOKEN_SERVICE_CA_CERT`: the CA trusted for token-service's certificate (when
    /// `TOKEN_SERVICE_URL` is https).
    pub token_service_ca: Option<InternalCa>,
    /// Deadline of one call to token-service (`CompleteInstall` includes Snyk's token exchange).
    pub token_service_timeout: Duration,
    pub projects_service_url: Url,
    /// `PROJECTS_SERVICE_CA_CERT`: the CA trusted for projects-service's certificate (when
    /// `PROJECTS_SERVICE_URL` is https).
    pub projects_service_ca: Option<InternalCa>,
    pub projects_service_api_key: SecretString,
    /// The plain-text hops `INTERNAL_PLAINTEXT=allow` let through, said at start-up.
    pub internal_hops: InternalHops,
    /// The time limit of one org's listing on the install page (projects-service follows every
    /// page); past it the org shows as not listed in time.
    pub projects_service_timeout: Duration,
    /// Where the pending OAuth states live (`AUTH_REDIS_URL`; `REDIS_URL` only in demo mode): a
    /// Redis of its own, so browser traffic cannot evict or crowd out the grants, and the
    /// internet-facing service holds no credential of the grants' Redis. Printed without its
    /// password.
    pub redis: RedisTarget,
    /// Which variable `redis` came from, for errors.
    pub redis_var: &'static str,
    /// Encrypts and authenticates the session cookie: the first key seals, every key opens.
    pub cookie_keys: CookieKeys,
    /// How long a session cookie is honoured after it was sealed (`AUTH_SESSION_TTL_SECONDS`).
    pub session_ttl: Duration,
    /// `/auth` requests allowed per client address and minute (`AUTH_RATE_LIMIT_PER_MINUTE`).
    pub auth_rate_limit_per_minute: NonZeroU32,
    /// Take the client address from the last `X-Forwarded-For` entry
    /// (`AUTH_TRUST_X_FORWARDED_FOR`, default off: the TCP peer address).
    pub trust_x_forwarded_for: bool,
    /// How long to keep serving (with readiness off) after a shutdown signal.
    pub shutdown_drain: Duration,
}

/// The session cookie key (`AUTH_COOKIE_KEY`): 64 bytes, never shown by `Debug`.
#[derive(Clone)]
pub struct CookieKey {
    key: Key,
    /// The 64 bytes in use are the demo key docker-compose.yml publishes (whatever follows them,
    /// however they were spelt).
    shipped: bool,
}

impl CookieKey {
    /// Parses base64 (standard or URL-safe alphabet, padding optional) of at least 64 bytes.
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        let trimmed = value.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
            .map_err(|_| anyhow::anyhow!("is not base64"))?;
        if bytes.len() < 64 {
            bail!("must decode to at least 64 bytes, got {}", bytes.len());
        }
        if bytes.iter().all(|b| *b == bytes[0]) {
            bail!("is not random (every byte is the same)");
        }
        let key =
            Key::try_from(&bytes[..64]).map_err(|_| anyhow::anyhow!("is not a usable key"))?;
        let canonical = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes[..64]);
        Ok(CookieKey {
            key,
            shipped: service_runtime::demo::is_shipped(&canonical),
        })
    }

    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey([redacted])")
    }
}

/// `AUTH_COOKIE_KEY`: one key, or a comma-separated list. The first seals new cookies; every key
/// opens, so a key rotates without signing anyone out: put the new key first, keep the old one
/// until the sessions it sealed have expired (`AUTH_SESSION_TTL_SECONDS`), then drop it.
#[derive(Clone)]
pub struct CookieKeys(Vec<CookieKey>);

impl CookieKeys {
    /// Parses the list; every entry must be a valid key (see [`CookieKey::parse`]).
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        let entries: Vec<&str> = value.split(',').map(str::trim).collect();
        let mut keys = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            if entry.is_empty() {
                bail!("has an empty entry (number {})", i + 1);
            }
            let key = CookieKey::parse(entry).map_err(|e| {
                if entries.len() == 1 {
                    e
                } else {
                    anyhow::anyhow!("entry {} {e}", i + 1)
                }
            })?;
            keys.push(key);
        }
        Ok(CookieKeys(keys))
    }

    /// Whether any key is docker-compose.yml's published demo key (compared on the key
    /// material, so bytes appended to it, or another base64 alphabet, do not hide it).
    pub fn any_shipped(&self) -> bool {
        self.0.iter().any(|k| k.shipped)
    }

    /// The key that seals new cookies.
    pub fn sealing(&self) -> &Key {
        // `parse` never builds an empty list (`split` yields at least one entry).
        self.0[0].key()
    }

    /// Every key that may open a cookie, the sealing key first.
    pub fn all(&self) -> Vec<Key> {
        self.0.iter().map(|k| k.key().clone()).collect()
    }
}

impl fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CookieKeys([{} redacted])", self.0.len())
    }
}

/// Upper bound of the client id and of one scope: far above real values.
const MAX_TOKEN_LEN: usize = 256;
/// 30 days.
const DEFAULT_SESSION_TTL_SECS: u64 = 2_592_000;
/// 400 days: the longest cookie lifetime browsers honour (RFC 6265bis).
const MAX_SESSION_TTL_SECS: u64 = 400 * 86_400;
const DEFAULT_AUTH_RATE_LIMIT: u32 = 30;
/// 20 s for one org's listing: a person is waiting for the page, and a listing still running by
/// then is an org of thousands of projects or a slow Snyk. A third of projects-service's own
/// 60 s listing deadline.
const DEFAULT_ORG_LISTING_TIMEOUT_MS: u64 = 20_000;
/// Where projects-service is.
const PROJECTS_SERVICE_URL: &str = "PROJECTS_SERVICE_URL";

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Env::new(get);
        let snyk_app_url = env.snyk_url("SNYK_APP_URL", "https://app.snyk.io")?;
        if snyk_app_url.query().is_some() {
            bail!("SNYK_APP_URL must not have a query");
        }
        let client_id = env.required("SNYK_CLIENT_ID")?;
        if client_id.len() > MAX_TOKEN_LEN || !client_id.bytes().all(|b| b.is_ascii_graphic()) {
            bail!(
                "SNYK_CLIENT_ID must be at most {MAX_TOKEN_LEN} printable ASCII characters without spaces"
            );
        }
        // Over plain http the session cookie could be read and the binding cookie planted on the
        // way: https, unless this machine or the demo.
        let redirect_uri = env.secure_url("SNYK_REDIRECT_URI", "http://localhost:8080/callback")?;
        let scopes = match env.optional("SNYK_SCOPES") {
            Some(s) => {
                if s.split_whitespace().any(|scope| {
                    scope.len() > MAX_TOKEN_LEN || !scope.bytes().all(|b| b.is_ascii_graphic())
                }) {
                    bail!("SNYK_SCOPES must be space-separated scopes of printable ASCII");
                }
                Some(s.split_whitespace().collect::<Vec<_>>().join(" "))
            }
            None => None,
        };
        let (redis_var, redis) = service_runtime::redis::auth_target(&env)?;
        let cookie_keys = CookieKeys::parse(&env.required("AUTH_COOKIE_KEY")?).map_err(|e| {
            anyhow::anyhow!("AUTH_COOKIE_KEY {e}; generate one with `openssl rand -base64 64`")
        })?;
        if cookie_keys.any_shipped() && !env.demo_mode().unwrap_or(false) {
            bail!(
                "AUTH_COOKIE_KEY holds the demo key published in docker-compose.yml, refused unless DEMO_MODE=true; generate one with `openssl rand -base64 64`"
            );
        }
        let session_ttl_secs: u64 = env.parse(
            "AUTH_SESSION_TTL_SECONDS",
            DEFAULT_SESSION_TTL_SECS,
            "a whole number of seconds",
        )?;
        if !(1..=MAX_SESSION_TTL_SECS).contains(&session_ttl_secs) {
            bail!("AUTH_SESSION_TTL_SECONDS must be between 1 and {MAX_SESSION_TTL_SECS}");
        }
        let auth_rate_limit_per_minute: NonZeroU32 = env.parse(
            "AUTH_RATE_LIMIT_PER_MINUTE",
            DEFAULT_AUTH_RATE_LIMIT,
            "a whole number greater than 0",
        )?;
        let trust_x_forwarded_for: bool =
            env.parse("AUTH_TRUST_X_FORWARDED_FOR", false, "true or false")?;
        let mut internal_hops = InternalHops::from_env(&env)?;
        let token_service_urls = TokenServiceUrls::from_env(&env)?;
        internal_hops.check(TokenServiceUrls::VAR, token_service_urls.iter())?;
        let projects_service_url = env.http_url(PROJECTS_SERVICE_URL, "http://127.0.0.1:8081")?;
        internal_hops.check(PROJECTS_SERVICE_URL, [&projects_service_url])?;

        Ok(Settings {
            addr: env.addr("AUTH_SERVICE_ADDR", "0.0.0.0:8080")?,
            metrics_addr: env.addr("AUTH_SERVICE_METRICS_ADDR", "0.0.0.0:9465")?,
            snyk_app_url,
            client_id,
            redirect_uri,
            scopes,
            token_service_urls,
            token_service_api_key: env.header_secret("TOKEN_SERVICE_API_KEY")?,
            token_service_ca: InternalCa::from_env(&env, "TOKEN_SERVICE_CA_CERT")?,
            token_service_timeout: env.millis("TOKEN_SERVICE_TIMEOUT_MS", 15_000)?,
            projects_service_url,
            projects_service_ca: InternalCa::from_env(&env, "PROJECTS_SERVICE_CA_CERT")?,
            internal_hops,
            projects_service_api_key: env.header_secret("PROJECTS_SERVICE_API_KEY")?,
            projects_service_timeout: env.millis(
                "PROJECTS_SERVICE_TIMEOUT_MS",
                DEFAULT_ORG_LISTING_TIMEOUT_MS,
            )?,
            redis,
            redis_var,
            cookie_keys,
            session_ttl: Duration::from_secs(session_ttl_secs),
            auth_rate_limit_per_minute,
            trust_x_forwarded_for,
            shutdown_drain: env.millis_or_zero("SHUTDOWN_DRAIN_MS", 0)?,
        })
    }

    /// When the public URL (the redirect URI) is https: cookies get the `Secure` attribute and
    /// `__Host-` names, and responses carry `Strict-Transport-Security`.
    pub fn secure_cookies(&self) -> bool {
        self.redirect_uri.scheme() == "https"
    }

    /// The browser-facing origin (of the redirect URI): what `Origin` a same-site form post has.
    pub fn public_origin(&self) -> String {
        self.redirect_uri.origin().ascii_serialization()
    }

    /// `{SNYK_APP_URL}/oauth2/authorize`, keeping any path prefix of the app URL.
    pub fn authorize_endpoint(&self) -> Url {
        let mut url = self.snyk_app_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["oauth2", "authorize"]);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 bytes 0..=63, base64: a valid (if not secret) cookie key for tests.
    const COOKIE_KEY: &str =
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("AUTH_REDIS_URL", "redis://127.0.0.1:6380"),
        ("SNYK_CLIENT_ID", "cid"),
        ("TOKEN_SERVICE_API_KEY", "tk-secret-value"),
        ("PROJECTS_SERVICE_API_KEY", "pk-secret-value"),
        ("AUTH_COOKIE_KEY", COOKIE_KEY),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> anyhow::Result<Settings> {
        let mut pairs = extra.to_vec();
        pairs.extend_from_slice(MINIMAL);
        Settings::from_lookup(env(&pairs))
    }

    #[test]
    fn defaults_apply() {
        let s = with(&[]).expect("valid");
        assert_eq!(s.addr.port(), 8080);
        assert_eq!(s.redirect_uri.as_str(), "http://localhost:8080/callback");
        assert_eq!(s.snyk_app_url.as_str(), "https://app.snyk.io/");
        let token_service: Vec<&str> = s.token_service_urls.iter().map(|u| u.as_str()).collect();
        assert_eq!(token_service, ["http://127.0.0.1:50051/"]);
        assert_eq!(s.projects_service_url.as_str(), "http://127.0.0.1:8081/");
        assert_eq!(s.redis.to_string(), "redis://127.0.0.1:6380/0");
        assert_eq!(s.metrics_addr.to_string(), "0.0.0.0:9465");
        assert_eq!(s.session_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(s.auth_rate_limit_per_minute.get(), 30);
        assert_eq!(s.projects_service_timeout, Duration::from_secs(20));
        assert!(
            !s.trust_x_forwarded_for,
            "the proxy header is not trusted by default"
        );
        assert_eq!(s.public_origin(), "http://localhost:8080");
        assert_eq!(s.scopes, None);
        assert!(!s.secure_cookies());
        assert_eq!(
            s.authorize_endpoint().as_str(),
            "https://app.snyk.io/oauth2/authorize"
        );
    }

    #[test]
    fn authorize_endpoint_keeps_a_path_prefix() {
        let s = with(&[("SNYK_APP_URL", "https://proxy.example/snyk")]).expect("valid");
        assert_eq!(
            s.authorize_endpoint().as_str(),
            "https://proxy.example/snyk/oauth2/authorize"
        );
        let s = with(&[("SNYK_APP_URL", "https://proxy.example/snyk/")]).expect("valid");
        assert_eq!(
            s.authorize_endpoint().as_str(),
            "https://proxy.example/snyk/oauth2/authorize"
        );
    }

    #[test]
    fn scopes_are_normalised_and_https_makes_cookies_secure() {
        let s = with(&[
            ("SNYK_SCOPES", "  org.read   org.project.read "),
            ("SNYK_REDIRECT_URI", "https://a.example/callback"),
        ])
        .expect("valid");
        assert_eq!(s.scopes.as_deref(), Some("org.read org.project.read"));
        assert!(s.secure_cookies());
        assert_eq!(with(&[("SNYK_SCOPES", "   ")]).expect("valid").scopes, None);
    }

    #[test]
    fn every_missing_required_variable_is_named() {
        for (i, (name, _)) in MINIMAL.iter().enumerate() {
            let pairs: Vec<_> = MINIMAL
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| *p)
                .collect();
            let err = Settings::from_lookup(env(&pairs)).expect_err(name);
            assert!(err.to_string().contains(name), "{name}: {err:#}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (k, v) in [
            ("AUTH_SERVICE_ADDR", "localhost"),
            ("SNYK_APP_URL", "not a url"),
            ("SNYK_APP_URL", "ftp://app.snyk.io"),
            ("SNYK_APP_URL", "https://app.snyk.io/?x=1"),
            ("SNYK_REDIRECT_URI", "http://localhost:8080/callback#frag"),
            ("SNYK_REDIRECT_URI", "/callback"),
            ("SNYK_CLIENT_ID", "has space"),
            ("SNYK_SCOPES", "org.read \u{7}bell"),
            ("TOKEN_SERVICE_URL", "::"),
            ("TOKEN_SERVICE_URL", "http://token-1:50051,"),
            ("PROJECTS_SERVICE_URL", "unix:/x"),
            ("TOKEN_SERVICE_TIMEOUT_MS", "0"),
            ("PROJECTS_SERVICE_TIMEOUT_MS", "soon"),
            ("REDIS_URL", "mysql://localhost"),
            ("AUTH_COOKIE_KEY", "not base64!"),
            ("AUTH_COOKIE_KEY", "c2hvcnQ="),
            (
                "AUTH_COOKIE_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
            ),
            ("TOKEN_SERVICE_API_KEY", "two words"),
            ("AUTH_REDIS_URL", "mysql://localhost"),
            ("AUTH_SERVICE_METRICS_ADDR", "9465"),
            ("AUTH_SESSION_TTL_SECONDS", "0"),
            ("AUTH_SESSION_TTL_SECONDS", "999999999999"),
            ("AUTH_SESSION_TTL_SECONDS", "a month"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "-1"),
            ("AUTH_TRUST_X_FORWARDED_FOR", "yes please"),
            ("AUTH_COOKIE_KEY", "c2hvcnQ=,"),
            (
                "AUTH_COOKIE_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==,c2hvcnQ=",
            ),
        ] {
            let err = with(&[(k, v)]).expect_err(k);
            assert!(format!("{err:#}").contains(k), "{k}={v}: {err:#}");
        }
    }

    #[test]
    fn the_public_url_is_https_unless_loopback_or_demo() {
        let err = with(&[("SNYK_REDIRECT_URI", "http://app.example/callback")])
            .expect_err("plain http on a network");
        assert!(err.to_string().contains("SNYK_REDIRECT_URI"), "{err}");
        with(&[("SNYK_REDIRECT_URI", "http://127.0.0.1:8080/callback")]).expect("loopback");
        with(&[
            ("SNYK_REDIRECT_URI", "http://app.example/callback"),
            ("DEMO_MODE", "true"),
            ("SNYK_APP_URL", "http://localhost:8090"),
        ])
        .expect("demo");
    }

    #[test]
    fn internal_hops_are_https_outside_demo_mode_unless_a_mesh_encrypts_them() {
        for (var, url) in [
            ("TOKEN_SERVICE_URL", "http://token-service:50051"),
            ("PROJECTS_SERVICE_URL", "http://projects-service:8081"),
        ] {
            let err = format!("{:#}", with(&[(var, url)]).expect_err(var));
            assert!(
                err.contains(var) && err.contains("INTERNAL_PLAINTEXT"),
                "{var}: {err}"
            );
            let s = with(&[(var, url), ("INTERNAL_PLAINTEXT", "allow")]).expect("mesh");
            assert_eq!(s.internal_hops.plaintext().count(), 1, "{var}");
        }
        let s = with(&[
            ("TOKEN_SERVICE_URL", "https://token-service:50051"),
            ("PROJECTS_SERVICE_URL", "https://projects-service:8081"),
        ])
        .expect("https");
        assert_eq!(s.internal_hops.plaintext().count(), 0);
        for var in ["PROJECTS_SERVICE_CA_CERT", "TOKEN_SERVICE_CA_CERT"] {
            let err = format!("{:#}", with(&[(var, "Cargo.toml")]).expect_err(var));
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn the_demo_cookie_key_is_refused_with_bytes_appended() {
        use base64::Engine as _;
        let demo = base64::engine::general_purpose::STANDARD
            .decode("ZGVtby1vbmx5LWNvb2tpZS1rZXktaXQtaXMtaW4tZG9ja2VyLWNvbXBvc2UueW1sLXNvLU5PVC1BLVNFQ1JFVA==")
            .expect("base64");
        let mut longer = demo.clone();
        longer.extend_from_slice(b"extra bytes");
        for spelling in [
            base64::engine::general_purpose::STANDARD.encode(&longer),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&longer),
        ] {
            // `with` takes static strings; a test may leak two.
            let spelling: &'static str = Box::leak(spelling.into_boxed_str());
            let err = with(&[("AUTH_COOKIE_KEY", spelling)]).expect_err("demo key");
            assert!(err.to_string().contains("AUTH_COOKIE_KEY"), "{err}");
            with(&[
                ("AUTH_COOKIE_KEY", spelling),
                ("DEMO_MODE", "true"),
                ("SNYK_APP_URL", "http://localhost:8090"),
            ])
            .expect("the demo stack");
        }
    }

    #[test]
    fn demo_secrets_need_demo_mode_and_demo_mode_refuses_snyk() {
        service_runtime::demo::testing::assert_shipped_values_need_demo_mode(
            &[
                ("SNYK_CLIENT_ID", "demo-client-id"),
                ("TOKEN_SERVICE_API_KEY", "demo-auth-to-token-key-not-secret"),
                (
                    "PROJECTS_SERVICE_API_KEY",
                    "demo-auth-to-projects-key-not-secret",
                ),
                (
                    "AUTH_COOKIE_KEY",
                    "ZGVtby1vbmx5LWNvb2tpZS1rZXktaXQtaXMtaW4tZG9ja2VyLWNvbXBvc2UueW1sLXNvLU5PVC1BLVNFQ1JFVA==",
                ),
            ],
            ("SNYK_APP_URL", "http://localhost:8090"),
            with,
        );
        for extra in [
            &[
                ("DEMO_MODE", "true"),
                ("SNYK_APP_URL", "https://app.snyk.io"),
            ][..],
            &[
                ("DEMO_MODE", "true"),
                ("SNYK_APP_URL", "https://app.snykgov.io"),
            ][..],
            &[("DEMO_MODE", "true")][..],
            &[("SNYK_APP_URL", "http://app.example")][..],
            &[
                ("DEMO_MODE", "maybe"),
                ("SNYK_APP_URL", "http://localhost:8090"),
            ][..],
        ] {
            let err = with(extra).expect_err("refused");
            let err = err.to_string();
            assert!(
                err.contains("SNYK_APP_URL") || err.contains("DEMO_MODE"),
                "{extra:?}: {err}"
            );
        }
    }

    #[test]
    fn errors_do_not_repeat_secret_values() {
        let err = with(&[("AUTH_REDIS_URL", "redis://:hunter2@[bad")]).expect_err("invalid");
        assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
        let err = with(&[("AUTH_COOKIE_KEY", "c2VjcmV0LWJ1dC1zaG9ydA==")]).expect_err("short");
        assert!(!format!("{err:#}").contains("c2VjcmV0"), "{err:#}");
    }

    #[test]
    fn auth_service_never_takes_the_grants_redis() {
        let err = with(&[("REDIS_URL", "redis://127.0.0.1:6380/0")]).expect_err("shared");
        assert!(format!("{err:#}").contains("AUTH_REDIS_URL"), "{err:#}");
        let pairs: Vec<_> = MINIMAL
            .iter()
            .copied()
            .filter(|(k, _)| *k != "AUTH_REDIS_URL")
            .collect();
        let err = Settings::from_lookup(env(&pairs)).expect_err("required");
        assert!(
            format!("{err:#}").contains("AUTH_REDIS_URL must be set"),
            "{err:#}"
        );
    }

    #[test]
    fn cookie_keys_rotate_new_key_first() {
        let other = "PwABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pg==";
        let list = format!("{other} , {COOKIE_KEY}");
        let mut pairs = vec![("AUTH_COOKIE_KEY", list.as_str())];
        pairs.extend(
            MINIMAL
                .iter()
                .filter(|(k, _)| *k != "AUTH_COOKIE_KEY")
                .copied(),
        );
        let s = Settings::from_lookup(env(&pairs)).expect("valid");
        let first = CookieKey::parse(other).expect("key");
        let second = CookieKey::parse(COOKIE_KEY).expect("key");
        assert_eq!(s.cookie_keys.sealing().master(), first.key().master());
        let all: Vec<_> = s
            .cookie_keys
            .all()
            .iter()
            .map(|k| k.master().to_vec())
            .collect();
        assert_eq!(
            all,
            [
                first.key().master().to_vec(),
                second.key().master().to_vec()
            ]
        );
        assert_eq!(format!("{:?}", s.cookie_keys), "CookieKeys([2 redacted])");
        let err = with(&[("AUTH_COOKIE_KEY", "c2hvcnQ=")]).expect_err("short");
        assert!(
            !format!("{err:#}").contains("entry"),
            "one key needs no number: {err:#}"
        );
        let bad_second = format!("{COOKIE_KEY},c2hvcnQ=");
        let mut pairs = vec![("AUTH_COOKIE_KEY", bad_second.as_str())];
        pairs.extend(
            MINIMAL
                .iter()
                .filter(|(k, _)| *k != "AUTH_COOKIE_KEY")
                .copied(),
        );
        let err = Settings::from_lookup(env(&pairs)).expect_err("bad second key");
        assert!(
            format!("{err:#}").contains("AUTH_COOKIE_KEY entry 2"),
            "{err:#}"
        );
    }

    #[test]
    fn session_and_rate_limit_settings_parse() {
        let s = with(&[
            ("AUTH_SESSION_TTL_SECONDS", "60"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "5"),
            ("AUTH_TRUST_X_FORWARDED_FOR", "true"),
            ("AUTH_SERVICE_METRICS_ADDR", "127.0.0.1:0"),
        ])
        .expect("valid");
        assert_eq!(s.session_ttl, Duration::from_secs(60));
        assert_eq!(s.auth_rate_limit_per_minute.get(), 5);
        assert!(s.trust_x_forwarded_for);
        assert_eq!(s.metrics_addr.port(), 0);
    }

    #[test]
    fn url_safe_unpadded_cookie_keys_are_accepted() {
        let url_safe = COOKIE_KEY
            .replace('+', "-")
            .replace('/', "_")
            .replace('=', "");
        let mut pairs = vec![("AUTH_COOKIE_KEY", url_safe.as_str())];
        pairs.extend(
            MINIMAL
                .iter()
                .filter(|(k, _)| *k != "AUTH_COOKIE_KEY")
                .copied(),
        );
        Settings::from_lookup(env(&pairs)).expect("valid");
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let s = with(&[("AUTH_REDIS_URL", "redis://:hunter2@localhost")]).expect("valid");
        let dbg = format!("{s:?}");
        for secret in ["tk-secret-value", "pk-secret-value", "hunter2", "AAECAwQF"] {
            assert!(!dbg.contains(secret), "{secret} in {dbg}");
        }
    }
}
