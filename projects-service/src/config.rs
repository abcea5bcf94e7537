//! Typed settings for projects-service, read from the environment and validated at start-up.

use std::{net::SocketAddr, num::NonZeroUsize, sync::Arc, time::Duration};

use anyhow::bail;
use caller_auth::ClientKeys;
use secrecy::SecretString;
use service_runtime::{
    config::Env,
    grpc::TokenServiceUrls,
    internal::{InternalCa, InternalHops},
    tls::{ExtraRoots, SNYK_CA_CERT, ServerTls},
};

/// The PEM files of this service's certificate chain and key: HTTPS only when both are set.
pub const TLS_CERT_VAR: &str = "PROJECTS_SERVICE_TLS_CERT";
pub const TLS_KEY_VAR: &str = "PROJECTS_SERVICE_TLS_KEY";
/// Where `/metrics` is served when not on the main port.
pub const METRICS_ADDR_VAR: &str = "PROJECTS_SERVICE_METRICS_ADDR";
use url::Url;

/// 100 pages of Snyk's 100: as many calls to Snyk as one listing may make, and an answer of a
/// few MB (about 300 bytes a project), which a listing holds whole before it answers.
const DEFAULT_MAX_PROJECTS: usize = 10_000;

/// Everything projects-service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    /// `PROJECTS_SERVICE_TLS_CERT` and `_KEY`: serve HTTPS (only) when both are set.
    pub tls: Option<ServerTls>,
    /// `PROJECTS_SERVICE_METRICS_ADDR`: `/metrics` in plain HTTP on a port of its own (so a
    /// scraper needs neither the CA nor the API port); unset, on the main port.
    pub metrics_addr: Option<SocketAddr>,
    pub snyk_api_url: Url,
    /// `SNYK_CA_CERT`: trusted for HTTPS to Snyk in addition to the platform's roots.
    pub snyk_ca: ExtraRoots,
    /// The REST API version every request pins (`version=` query parameter).
    pub snyk_rest_version: String,
    /// Timeout of one Snyk REST request.
    pub snyk_timeout: Duration,
    /// Retries of 429/5xx/unreachable within one listing (they resume at the failed page).
    pub snyk_retries: u32,
    /// The longest pause between retries of a 5xx or an unreachable Snyk; a longer
    /// `Retry-After` ends the listing with 503. (A 429 pauses the install's budget instead.)
    pub snyk_max_backoff: Duration,
    /// `PROJECTS_SERVICE_DEADLINE_SECONDS`: a whole listing, waiting for the install's Snyk
    /// request budget included; past it the answer is 429 `rate_limited` (no permit in time)
    /// or 503 (Snyk too slow), never a longer wait.
    pub deadline: Duration,
    /// `PROJECTS_SERVICE_MAX_PROJECTS`: the most projects one listing returns; past it, no
    /// further page is fetched and the answer is 422 `too_many_projects`.
    pub max_projects: NonZeroUsize,
    /// `TOKEN_SERVICE_URL`: one token-service, or replicas that calls are spread over.
    pub token_service_urls: TokenServiceUrls,
    pub token_service_api_key: SecretString,
    /// `TOKEN_SERVICE_CA_CERT`: the CA trusted for token-service's certificate (when
    /// `TOKEN_SERVICE_URL` is https).
    pub token_service_ca: Option<InternalCa>,
    /// The plain-text hops `INTERNAL_PLAINTEXT=allow` let through, said at start-up.
    pub internal_hops: InternalHops,
    /// Deadline of one call to token-service (it may include waiting for a refresh).
    pub token_service_timeout: Duration,
    /// Who may call this service.
    pub client_keys: Arc<ClientKeys>,
    /// The callers that may list an org through whoever serves it (`GET /v1/orgs/{org}/…`,
    /// `PROJECTS_SERVICE_ORG_ROUTE_CALLERS`); every other caller lists through one install only.
    pub org_route_callers: Arc<[String]>,
    /// How long to keep serving (with readiness off) after a shutdown signal.
    pub shutdown_drain: Duration,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Env::new(get);
        let version = env.var("SNYK_REST_VERSION", "2024-05-31");
        if !is_rest_version(&version) {
            bail!("SNYK_REST_VERSION must be YYYY-MM-DD with an optional ~beta or ~experimental");
        }
        let client_keys = Arc::new(ClientKeys::parse(
            "PROJECTS_SERVICE_CLIENT_KEYS",
            &env.required("PROJECTS_SERVICE_CLIENT_KEYS")?,
        )?);
        let mut internal_hops = InternalHops::from_env(&env)?;
        let token_service_urls = TokenServiceUrls::from_env(&env)?;
        internal_hops.check(TokenServiceUrls::VAR, token_service_urls.iter())?;
        Ok(Settings {
            addr: env.addr("PROJECTS_SERVICE_ADDR", "0.0.0.0:8081")?,
            tls: ServerTls::from_env(&env, TLS_CERT_VAR, TLS_KEY_VAR)?,
            metrics_addr: env
                .optional(METRICS_ADDR_VAR)
                .map(|_| env.addr(METRICS_ADDR_VAR, "0.0.0.0:9466"))
                .transpose()?,
            snyk_api_url: env.snyk_url("SNYK_API_URL", "https://api.snyk.io")?,
            snyk_ca: env.extra_roots(SNYK_CA_CERT)?,
            snyk_rest_version: version,
            snyk_timeout: env.millis("SNYK_REST_TIMEOUT_MS", 30_000)?,
            snyk_retries: env.parse("SNYK_REST_RETRIES", 4, "a whole number")?,
            snyk_max_backoff: env.millis("SNYK_REST_MAX_BACKOFF_MS", 10_000)?,
            deadline: listing_deadline(&env)?,
            max_projects: env.parse(
                "PROJECTS_SERVICE_MAX_PROJECTS",
                DEFAULT_MAX_PROJECTS,
                "a whole number greater than 0",
            )?,
            token_service_urls,
            token_service_api_key: env.header_secret("TOKEN_SERVICE_API_KEY")?,
            token_service_ca: InternalCa::from_env(&env, "TOKEN_SERVICE_CA_CERT")?,
            internal_hops,
            token_service_timeout: env.millis("TOKEN_SERVICE_TIMEOUT_MS", 15_000)?,
            org_route_callers: org_route_callers(
                &client_keys,
                &env.var("PROJECTS_SERVICE_ORG_ROUTE_CALLERS", ""),
            )?,
            client_keys,
            shutdown_drain: env.millis_or_zero("SHUTDOWN_DRAIN_MS", 0)?,
        })
    }
}

/// `PROJECTS_SERVICE_DEADLINE_SECONDS`: at least one second.
fn listing_deadline(env: &Env) -> anyhow::Result<Duration> {
    const VAR: &str = "PROJECTS_SERVICE_DEADLINE_SECONDS";
    match env.parse(VAR, 60, "a whole number of seconds, at least 1")? {
        0 => bail!("{VAR} must be at least 1: a listing needs time for its Snyk requests"),
        s => Ok(Duration::from_secs(s)),
    }
}

/// `PROJECTS_SERVICE_ORG_ROUTE_CALLERS`: comma-separated caller names, each one of
/// `PROJECTS_SERVICE_CLIENT_KEYS`. Empty (the default): no caller may use the org route.
fn org_route_callers(keys: &ClientKeys, spec: &str) -> anyhow::Result<Arc<[String]>> {
    let mut callers: Vec<String> = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !keys.callers().any(|c| c == name) {
            bail!(
                "PROJECTS_SERVICE_ORG_ROUTE_CALLERS names caller {name:?}, which has no key in PROJECTS_SERVICE_CLIENT_KEYS"
            );
        }
        if !callers.iter().any(|c| c == name) {
            callers.push(name.to_owned());
        }
    }
    Ok(callers.into())
}

fn is_rest_version(v: &str) -> bool {
    let date = v.split_once('~').map_or(v, |(d, stability)| {
        if matches!(stability, "beta" | "experimental") {
            d
        } else {
            ""
        }
    });
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("TOKEN_SERVICE_API_KEY", "tk"),
        (
            "PROJECTS_SERVICE_CLIENT_KEYS",
            "auth-service=0123456789abcdef0123",
        ),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> anyhow::Result<Settings> {
        let mut pairs = extra.to_vec();
        pairs.extend_from_slice(MINIMAL);
        Settings::from_lookup(env(&pairs))
    }

    #[test]
    fn defaults_apply() {
        let s = with(&[]).expect("valid");
        assert_eq!(s.addr.port(), 8081);
        assert_eq!(s.snyk_rest_version, "2024-05-31");
        assert_eq!(s.snyk_retries, 4);
        assert_eq!(s.deadline, Duration::from_secs(60));
        assert_eq!(s.max_projects.get(), 10_000);
        let s = with(&[("PROJECTS_SERVICE_MAX_PROJECTS", "250")]).expect("valid");
        assert_eq!(s.max_projects.get(), 250);
    }

    #[test]
    fn a_listing_deadline_is_whole_seconds_and_never_zero() {
        let s = with(&[("PROJECTS_SERVICE_DEADLINE_SECONDS", "5")]).expect("valid");
        assert_eq!(s.deadline, Duration::from_secs(5));
        for bad in ["0", "-1", "1.5", "soon"] {
            let e = with(&[("PROJECTS_SERVICE_DEADLINE_SECONDS", bad)])
                .expect_err(bad)
                .to_string();
            assert!(
                e.contains("PROJECTS_SERVICE_DEADLINE_SECONDS"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn token_service_may_be_several_replicas() {
        let s = with(&[(
            "TOKEN_SERVICE_URL",
            "https://token-1:50051, https://token-2:50051",
        )])
        .expect("valid");
        assert_eq!(s.token_service_urls.len(), 2);
        assert_eq!(with(&[]).expect("valid").token_service_urls.len(), 1);
    }

    #[test]
    fn plain_http_to_token_service_elsewhere_needs_the_mesh_opt_out() {
        let plain = (
            "TOKEN_SERVICE_URL",
            "https://token-1:50051,http://token-2:50051",
        );
        let err = format!("{:#}", with(&[plain]).expect_err("plain text refused"));
        assert!(
            err.contains("TOKEN_SERVICE_URL") && err.contains("INTERNAL_PLAINTEXT"),
            "{err}"
        );
        let s = with(&[plain, ("INTERNAL_PLAINTEXT", "allow")]).expect("allowed");
        assert_eq!(
            s.internal_hops.plaintext().collect::<Vec<_>>(),
            [("TOKEN_SERVICE_URL", "token-2")]
        );
        with(&[("TOKEN_SERVICE_URL", "http://127.0.0.1:50051")]).expect("loopback");
    }

    #[test]
    fn metrics_move_to_their_own_port_only_when_asked() {
        assert_eq!(with(&[]).expect("valid").metrics_addr, None);
        let s = with(&[("PROJECTS_SERVICE_METRICS_ADDR", "0.0.0.0:9466")]).expect("valid");
        assert_eq!(s.metrics_addr.map(|a| a.port()), Some(9466));
        let err = with(&[("PROJECTS_SERVICE_METRICS_ADDR", "9466")]).expect_err("bad");
        assert!(
            err.to_string().contains("PROJECTS_SERVICE_METRICS_ADDR"),
            "{err}"
        );
    }

    #[test]
    fn https_takes_both_files_or_neither() {
        assert!(with(&[]).expect("valid").tls.is_none());
        for half in [
            ("PROJECTS_SERVICE_TLS_CERT", "Cargo.toml"),
            ("PROJECTS_SERVICE_TLS_KEY", "Cargo.toml"),
        ] {
            let err = format!("{:#}", with(&[half]).expect_err("half of TLS"));
            assert!(
                err.contains("PROJECTS_SERVICE_TLS_CERT")
                    && err.contains("PROJECTS_SERVICE_TLS_KEY"),
                "{err}"
            );
        }
        let err = with(&[
            ("PROJECTS_SERVICE_TLS_CERT", "Cargo.toml"),
            ("PROJECTS_SERVICE_TLS_KEY", "Cargo.toml"),
        ])
        .expect_err("not PEM");
        assert!(
            format!("{err:#}").contains("PROJECTS_SERVICE_TLS_CERT"),
            "{err:#}"
        );
    }

    #[test]
    fn rest_version_is_validated() {
        assert!(is_rest_version("2024-05-31~beta"));
        assert!(!is_rest_version("2024-5-31"));
        assert!(!is_rest_version("2024-05-31~gamma"));
        let err = with(&[("SNYK_REST_VERSION", "latest")]).expect_err("invalid");
        assert!(err.to_string().contains("SNYK_REST_VERSION"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        for (k, v) in [
            ("PROJECTS_SERVICE_CLIENT_KEYS", "auth-service=short"),
            ("PROJECTS_SERVICE_ADDR", "x"),
            ("SNYK_API_URL", "ftp://x"),
            ("TOKEN_SERVICE_URL", "::"),
            ("TOKEN_SERVICE_URL", "http://a:1,::"),
            ("SNYK_REST_TIMEOUT_MS", "0"),
            ("SNYK_CA_CERT", "/nonexistent/ca.pem"),
            ("SNYK_CA_CERT", "Cargo.toml"),
            ("TOKEN_SERVICE_CA_CERT", "Cargo.toml"),
            ("INTERNAL_PLAINTEXT", "yes"),
            ("PROJECTS_SERVICE_MAX_PROJECTS", "0"),
            ("PROJECTS_SERVICE_MAX_PROJECTS", "-1"),
            ("PROJECTS_SERVICE_MAX_PROJECTS", "many"),
        ] {
            let err = with(&[(k, v)]).expect_err(k);
            assert!(format!("{err:#}").contains(k), "{k}: {err:#}");
        }
        let err = Settings::from_lookup(env(&MINIMAL[1..])).expect_err("missing");
        assert!(err.to_string().contains("TOKEN_SERVICE_API_KEY"));
    }

    #[test]
    fn the_org_route_is_closed_unless_granted_by_name() {
        assert!(with(&[]).expect("valid").org_route_callers.is_empty());
        let s = with(&[(
            "PROJECTS_SERVICE_ORG_ROUTE_CALLERS",
            " auth-service ,auth-service",
        )])
        .expect("valid");
        assert_eq!(&*s.org_route_callers, ["auth-service".to_owned()]);
        let err = with(&[("PROJECTS_SERVICE_ORG_ROUTE_CALLERS", "nobody")]).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("PROJECTS_SERVICE_ORG_ROUTE_CALLERS")
                && err.to_string().contains("nobody"),
            "{err}"
        );
    }

    #[test]
    fn demo_keys_need_demo_mode_and_demo_mode_refuses_snyk() {
        service_runtime::demo::testing::assert_shipped_values_need_demo_mode(
            &[
                (
                    "TOKEN_SERVICE_API_KEY",
                    "demo-projects-to-token-key-not-secret",
                ),
                (
                    "PROJECTS_SERVICE_CLIENT_KEYS",
                    "auth-service=demo-auth-to-projects-key-not-secret",
                ),
            ],
            ("SNYK_API_URL", "http://fake-snyk:8090"),
            with,
        );
        for extra in [
            &[
                ("DEMO_MODE", "true"),
                ("SNYK_API_URL", "https://api.us.snyk.io"),
            ][..],
            &[
                ("DEMO_MODE", "true"),
                ("SNYK_API_URL", "https://api.snykgov.io"),
            ][..],
            &[("DEMO_MODE", "true")][..],
            &[("SNYK_API_URL", "http://api.example")][..],
        ] {
            let err = with(extra).expect_err("refused");
            assert!(err.to_string().contains("SNYK_API_URL"), "{extra:?}: {err}");
        }
        with(&[("SNYK_API_URL", "http://[::1]:8090")]).expect("loopback");
    }

    #[test]
    fn keys_stay_out_of_debug() {
        let dbg = format!("{:?}", with(&[]).expect("valid"));
        assert!(
            !dbg.contains("0123456789abcdef0123") && !dbg.contains("\"tk\""),
            "{dbg}"
        );
    }
}
