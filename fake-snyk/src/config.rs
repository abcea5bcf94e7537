//! Typed settings of the fake: the one registered OAuth client, token lifetimes and the seeded orgs.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use uuid::Uuid;

use crate::tls::TlsIdentity;

/// Namespace for the deterministic org ids, so that `OrgSeed::new("Demo Org", …)` yields the same id
/// in every process (tests of other crates may compute it on their side).
const ORG_NAMESPACE: Uuid = Uuid::from_u128(0x6f8c_1c1e_52b4_4d0c_9a57_2f4e_8d0b_aa01);

/// The default access-token lifetime, Snyk's documented default.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The default refresh-token lifetime: "about 180 days" per Snyk's documentation.
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(180 * 24 * 3600);
/// The default authorization-code lifetime (RFC 6749 recommends at most 10 minutes).
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(600);
/// The scopes granted when an authorize request names none.
pub const DEFAULT_SCOPE: &str = "org.read org.project.read";
/// The longest token lifetime the environment and the control endpoint accept (100 years): far
/// beyond any test or demo, and far from where `Instant + lifetime` would overflow.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Everything the fake needs to know before it starts. Build it with [`Config::new`] and adjust the
/// public fields; nothing is validated until [`crate::FakeSnyk::bind`].
#[derive(Clone)]
pub struct Config {
    /// The one registered client.
    pub client_id: String,
    /// Its secret; never shown by `Debug`.
    pub client_secret: String,
    /// Registered redirect URIs; authorize requests must name one of them exactly.
    pub redirect_uris: Vec<String>,
    /// Lifetime of each access token (`expires_in`).
    pub access_token_ttl: Duration,
    /// Lifetime of each refresh token, counted from the response that issued it.
    pub refresh_token_ttl: Duration,
    /// Lifetime of an authorization code.
    pub code_ttl: Duration,
    /// The scopes this client may ask for (space separated); also what is granted when the
    /// authorize request names no scope.
    pub scope: String,
    /// Orgs that every install can see.
    pub orgs: Vec<OrgSeed>,
    /// Initial token-endpoint latency (the same as injecting [`crate::Fault::TokenLatency`]).
    pub token_latency: Duration,
    /// `/rest/*` requests each access token may make in any minute (a sliding window), past
    /// which the fake answers 429 with `Retry-After` as Snyk does; 0 (the default): no limit.
    /// The same as injecting [`crate::Fault::RateLimitPerMinute`].
    pub rate_limit_per_minute: u32,
    /// Serve the `/_fake/*` control endpoints (stats, faults, token expiry). [`Config::new`] turns
    /// them on, for tests; the binary only with `DEMO_MODE=true`, so that a fake reachable from
    /// elsewhere cannot be steered or read.
    pub control_endpoints: bool,
    /// Serve HTTPS with this certificate instead of plain HTTP ([`Config::new`]: `None`; the
    /// binary: `FAKE_SNYK_TLS_CERT` and `FAKE_SNYK_TLS_KEY`).
    pub tls: Option<TlsIdentity>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uris", &self.redirect_uris)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("code_ttl", &self.code_ttl)
            .field("scope", &self.scope)
            .field("orgs", &self.orgs)
            .field("token_latency", &self.token_latency)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("control_endpoints", &self.control_endpoints)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// One org the fake serves, with `projects` generated projects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgSeed {
    /// The org id (a UUID v5 of the name for seeds made by [`OrgSeed::new`]).
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// URL-friendly name (`^[\w.-]+$`, as rest.json's `slug` filter requires).
    pub slug: String,
    /// How many projects `GET /rest/orgs/{id}/projects` lists.
    pub projects: usize,
}

impl OrgSeed {
    /// An org with a deterministic id (UUID v5 of `name`) and a slug derived from `name`.
    pub fn new(name: &str, projects: usize) -> Self {
        Self {
            id: Uuid::new_v5(&ORG_NAMESPACE, name.as_bytes()),
            name: name.to_owned(),
            slug: slugify(name),
            projects,
        }
    }
}

/// Lower-case ASCII letters and digits, every other run of characters becomes one `-`.
fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        // A name made only of punctuation still needs a slug that matches `^[\w.-]+$`.
        slug.push_str("org");
    }
    slug
}

impl Config {
    /// One client with one redirect URI, default lifetimes and scope, and one org "Demo Org" with
    /// 25 projects.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: vec![redirect_uri.into()],
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            code_ttl: DEFAULT_CODE_TTL,
            scope: DEFAULT_SCOPE.to_owned(),
            orgs: vec![OrgSeed::new("Demo Org", 25)],
            token_latency: Duration::ZERO,
            rate_limit_per_minute: 0,
            control_endpoints: true,
            tls: None,
        }
    }

    /// The binary's configuration, read from the `FAKE_SNYK_*` environment variables.
    pub fn from_env() -> anyhow::Result<(SocketAddr, Config)> {
        Ok(Self::from_lookup(|name| std::env::var(name).ok())?)
    }

    /// Like [`Config::from_env`], with the variables looked up through `lookup` (so that tests
    /// need not mutate the process environment).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(SocketAddr, Config), ConfigError> {
        let var =
            |name: &'static str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());

        let addr_raw = var("FAKE_SNYK_ADDR", "127.0.0.1:8090");
        let addr: SocketAddr = addr_raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::invalid("FAKE_SNYK_ADDR", &addr_raw, e))?;

        let client_id = var("FAKE_SNYK_CLIENT_ID", "demo-client-id");
        if client_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "FAKE_SNYK_CLIENT_ID",
                &client_id,
                "must not be empty",
            ));
        }
        // The secret's value never appears in an error message.
        let client_secret = var("FAKE_SNYK_CLIENT_SECRET", "demo-client-secret");
        if client_secret.is_empty() {
            return Err(ConfigError::Invalid {
                var: "FAKE_SNYK_CLIENT_SECRET",
                value: String::new(),
                reason: "must not be empty".to_owned(),
            });
        }

        let uris_raw = var("FAKE_SNYK_REDIRECT_URIS", "http://localhost:8080/callback");
        let redirect_uris = parse_redirect_uris(&uris_raw)
            .map_err(|e| ConfigError::invalid("FAKE_SNYK_REDIRECT_URIS", &uris_raw, e))?;

        let access_ttl_raw = var("FAKE_SNYK_ACCESS_TOKEN_TTL_SECONDS", "3600");
        let access_ttl = parse_ttl_seconds(&access_ttl_raw).map_err(|e| {
            ConfigError::invalid("FAKE_SNYK_ACCESS_TOKEN_TTL_SECONDS", &access_ttl_raw, e)
        })?;

        let refresh_ttl_raw = var(
            "FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS",
            &DEFAULT_REFRESH_TOKEN_TTL.as_secs().to_string(),
        );
        let refresh_ttl = parse_ttl_seconds(&refresh_ttl_raw).map_err(|e| {
            ConfigError::invalid("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", &refresh_ttl_raw, e)
        })?;

        let orgs_raw = var("FAKE_SNYK_ORGS", "Demo Org:25,Platform Team:120");
        let orgs = parse_orgs(&orgs_raw)
            .map_err(|e| ConfigError::invalid("FAKE_SNYK_ORGS", &orgs_raw, e))?;

        let latency_raw = var("FAKE_SNYK_TOKEN_LATENCY_MS", "0");
        let latency_ms: u64 = latency_raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::invalid("FAKE_SNYK_TOKEN_LATENCY_MS", &latency_raw, e))?;

        let rate_limit_raw = var("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", "0");
        let rate_limit_per_minute: u32 = rate_limit_raw.trim().parse().map_err(|e| {
            ConfigError::invalid("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", &rate_limit_raw, e)
        })?;

        let demo_raw = lookup(service_runtime::demo::DEMO_MODE);
        let demo = service_runtime::demo::parse(demo_raw.as_deref()).map_err(|e| {
            ConfigError::invalid("DEMO_MODE", demo_raw.as_deref().unwrap_or_default(), e)
        })?;

        let mut config = Config::new(client_id.trim(), client_secret, "");
        config.control_endpoints = demo;
        config.redirect_uris = redirect_uris;
        config.access_token_ttl = access_ttl;
        config.refresh_token_ttl = refresh_ttl;
        config.orgs = orgs;
        config.token_latency = Duration::from_millis(latency_ms);
        config.rate_limit_per_minute = rate_limit_per_minute;
        config.tls = TlsIdentity::from_lookup(&lookup)?;
        Ok((addr, config))
    }

    /// Checks what `Config::new` and field assignments cannot: called once at start-up.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.client_id.is_empty() {
            return Err("client_id must not be empty".to_owned());
        }
        if self.redirect_uris.is_empty() {
            return Err("at least one redirect URI must be registered".to_owned());
        }
        for uri in &self.redirect_uris {
            check_redirect_uri(uri)?;
        }
        if self.scope.split_whitespace().next().is_none() {
            return Err("scope must name at least one scope".to_owned());
        }
        let mut ids = std::collections::HashSet::new();
        for org in &self.orgs {
            if !ids.insert(org.id) {
                return Err(format!("org id {} is seeded twice", org.id));
            }
        }
        Ok(())
    }
}

/// A token lifetime given in whole seconds, as the `*_TTL_SECONDS` variables give it.
fn parse_ttl_seconds(raw: &str) -> Result<Duration, String> {
    let seconds = raw.trim().parse::<u64>().map_err(|e| e.to_string())?;
    ttl_from_seconds(seconds)
}

/// Checks a token lifetime in whole seconds: at least 1, at most [`MAX_TTL`].
pub(crate) fn ttl_from_seconds(seconds: u64) -> Result<Duration, String> {
    if seconds == 0 {
        return Err("must be at least 1".to_owned());
    }
    if seconds > MAX_TTL.as_secs() {
        return Err(format!("must be at most {} (100 years)", MAX_TTL.as_secs()));
    }
    Ok(Duration::from_secs(seconds))
}

fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let parsed = url::Url::parse(uri).map_err(|e| format!("redirect URI {uri:?}: {e}"))?;
    if parsed.fragment().is_some() {
        // RFC 6749 §3.1.2: the redirection endpoint URI MUST NOT include a fragment.
        return Err(format!("redirect URI {uri:?} must not have a fragment"));
    }
    Ok(())
}

fn parse_redirect_uris(raw: &str) -> Result<Vec<String>, String> {
    let uris: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if uris.is_empty() {
        return Err("must name at least one redirect URI".to_owned());
    }
    for uri in &uris {
        check_redirect_uri(uri)?;
    }
    Ok(uris)
}

fn parse_orgs(raw: &str) -> Result<Vec<OrgSeed>, String> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut orgs: Vec<OrgSeed> = Vec::new();
    for entry in raw.split(',') {
        let (name, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("entry {entry:?} is not `name:projects`"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("entry {entry:?} has an empty name"));
        }
        let projects: usize = count
            .trim()
            .parse()
            .map_err(|e| format!("entry {entry:?}: project count: {e}"))?;
        let seed = OrgSeed::new(name, projects);
        if orgs.iter().any(|o| o.id == seed.id) {
            return Err(format!("org {name:?} is listed twice"));
        }
        orgs.push(seed);
    }
    Ok(orgs)
}

/// A configuration value the binary cannot start with; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `var` holds `value`, which is unusable for `reason`.
    #[error("invalid {var}={value:?}: {reason}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// Its value as read.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A file named by `var` cannot be used; `reason` names the variable and the file.
    #[error("{reason}")]
    Unusable {
        /// The environment variable.
        var: &'static str,
        /// What is wrong, naming `var` and its file.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(var: &'static str, value: &str, reason: impl fmt::Display) -> Self {
        Self::Invalid {
            var,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let (addr, config) = Config::from_lookup(lookup(&[])).unwrap();
        assert_eq!(addr, "127.0.0.1:8090".parse().unwrap());
        assert_eq!(config.client_id, "demo-client-id");
        assert_eq!(config.client_secret, "demo-client-secret");
        assert_eq!(config.redirect_uris, ["http://localhost:8080/callback"]);
        assert_eq!(config.access_token_ttl, Duration::from_secs(3600));
        assert_eq!(config.refresh_token_ttl, DEFAULT_REFRESH_TOKEN_TTL);
        assert_eq!(config.token_latency, Duration::ZERO);
        assert_eq!(config.rate_limit_per_minute, 0, "no rate limit");
        assert!(
            !config.control_endpoints,
            "control endpoints only in demo mode"
        );
        let orgs: Vec<(&str, usize)> = config
            .orgs
            .iter()
            .map(|o| (o.name.as_str(), o.projects))
            .collect();
        assert_eq!(orgs, [("Demo Org", 25), ("Platform Team", 120)]);
        assert_eq!(config.orgs[1].slug, "platform-team");
        config.validate().unwrap();
    }

    #[test]
    fn values_are_read() {
        let (addr, config) = Config::from_lookup(lookup(&[
            ("FAKE_SNYK_ADDR", "0.0.0.0:9999"),
            ("FAKE_SNYK_CLIENT_ID", "cid"),
            ("FAKE_SNYK_CLIENT_SECRET", "sec"),
            (
                "FAKE_SNYK_REDIRECT_URIS",
                "http://a.test/cb, http://b.test/cb",
            ),
            ("FAKE_SNYK_ACCESS_TOKEN_TTL_SECONDS", "5"),
            ("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", " 7 "),
            ("FAKE_SNYK_ORGS", "Acme: 3,Beta:Co:0"),
            ("FAKE_SNYK_TOKEN_LATENCY_MS", "250"),
            ("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", " 600 "),
        ]))
        .unwrap();
        assert_eq!(addr.port(), 9999);
        assert_eq!(
            config.redirect_uris,
            ["http://a.test/cb", "http://b.test/cb"]
        );
        assert_eq!(config.access_token_ttl, Duration::from_secs(5));
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(7));
        assert_eq!(config.token_latency, Duration::from_millis(250));
        assert_eq!(config.rate_limit_per_minute, 600);
        assert_eq!(config.orgs[0], OrgSeed::new("Acme", 3));
        // The last colon separates the count, so names may contain colons.
        assert_eq!(config.orgs[1].name, "Beta:Co");
        assert_eq!(config.orgs[1].slug, "beta-co");
    }

    #[test]
    fn every_invalid_value_names_its_variable() {
        for (var, value) in [
            ("FAKE_SNYK_ADDR", "localhost"),
            ("FAKE_SNYK_CLIENT_ID", " "),
            ("FAKE_SNYK_CLIENT_SECRET", ""),
            ("FAKE_SNYK_REDIRECT_URIS", "not a url"),
            ("FAKE_SNYK_REDIRECT_URIS", "http://x.test/cb#frag"),
            ("FAKE_SNYK_REDIRECT_URIS", " , "),
            ("FAKE_SNYK_ACCESS_TOKEN_TTL_SECONDS", "soon"),
            ("FAKE_SNYK_ACCESS_TOKEN_TTL_SECONDS", "0"),
            ("FAKE_SNYK_ACCESS_TOKEN_TTL_SECONDS", "99999999999999"),
            ("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", "soon"),
            ("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", "0"),
            ("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", "-1"),
            ("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", "1.5"),
            ("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", ""),
            (
                "FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS",
                "18446744073709551615",
            ),
            ("FAKE_SNYK_ORGS", "Acme"),
            ("FAKE_SNYK_ORGS", "Acme:many"),
            ("FAKE_SNYK_ORGS", ":3"),
            ("FAKE_SNYK_ORGS", "Acme:1,Acme:2"),
            ("FAKE_SNYK_TOKEN_LATENCY_MS", "-1"),
            ("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", "many"),
            ("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", "-1"),
            ("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", "1.5"),
            ("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", ""),
            ("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", "4294967296"),
            ("DEMO_MODE", "maybe"),
        ] {
            let err = Config::from_lookup(lookup(&[(var, value)])).unwrap_err();
            assert!(err.to_string().contains(var), "{var}={value:?} gave {err}");
        }
    }

    #[test]
    fn the_refresh_token_ttl_is_whole_seconds_from_1_to_100_years() {
        let read = |value: &str| {
            Config::from_lookup(lookup(&[("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", value)]))
                .map(|(_, config)| config.refresh_token_ttl)
        };
        assert_eq!(read("1").unwrap(), Duration::from_secs(1));
        assert_eq!(read(&MAX_TTL.as_secs().to_string()).unwrap(), MAX_TTL);
        let too_long = (MAX_TTL.as_secs() + 1).to_string();
        let err = read(&too_long).unwrap_err().to_string();
        assert!(
            err.contains("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS") && err.contains("at most"),
            "{err}"
        );
        let err = read("0").unwrap_err().to_string();
        assert!(err.contains("must be at least 1"), "{err}");
        // The access-token lifetime is not touched by the refresh-token variable.
        let (_, config) =
            Config::from_lookup(lookup(&[("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", "60")])).unwrap();
        assert_eq!(config.access_token_ttl, DEFAULT_ACCESS_TOKEN_TTL);
    }

    #[test]
    fn demo_mode_turns_the_control_endpoints_on() {
        let (_, config) = Config::from_lookup(lookup(&[("DEMO_MODE", "true")])).unwrap();
        assert!(config.control_endpoints);
        let (_, config) = Config::from_lookup(lookup(&[("DEMO_MODE", "false")])).unwrap();
        assert!(!config.control_endpoints);
        // The library's default: tests drive the fake through them.
        assert!(Config::new("c", "s", "http://x.test/cb").control_endpoints);
    }

    #[test]
    fn tls_takes_both_files_or_neither_and_names_the_one_at_fault() {
        let (_, config) = Config::from_lookup(lookup(&[("FAKE_SNYK_TLS_CERT", " ")])).unwrap();
        assert!(config.tls.is_none(), "blank is unset");
        for (vars, at_fault, why) in [
            (
                &[("FAKE_SNYK_TLS_CERT", "/tls/cert.pem")][..],
                "FAKE_SNYK_TLS_KEY",
                "both or neither",
            ),
            (
                &[("FAKE_SNYK_TLS_KEY", "/tls/key.pem")][..],
                "FAKE_SNYK_TLS_CERT",
                "both or neither",
            ),
            (
                &[
                    ("FAKE_SNYK_TLS_CERT", "/nonexistent/cert.pem"),
                    ("FAKE_SNYK_TLS_KEY", "/nonexistent/key.pem"),
                ][..],
                "FAKE_SNYK_TLS_CERT",
                "cannot read /nonexistent/cert.pem",
            ),
            (
                // A file without a certificate: this crate's manifest.
                &[
                    ("FAKE_SNYK_TLS_CERT", "Cargo.toml"),
                    ("FAKE_SNYK_TLS_KEY", "Cargo.toml"),
                ][..],
                "FAKE_SNYK_TLS_CERT",
                "Cargo.toml holds no certificate",
            ),
        ] {
            let err = Config::from_lookup(lookup(vars)).unwrap_err();
            let ConfigError::Unusable { var, .. } = &err else {
                panic!("{vars:?}: {err}");
            };
            assert_eq!(*var, at_fault, "{err}");
            let shown = err.to_string();
            assert!(shown.contains(at_fault) && shown.contains(why), "{shown}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let config = Config::new("cid", "super-secret-value", "http://x.test/cb");
        let shown = format!("{config:?}");
        assert!(!shown.contains("super-secret-value"), "{shown}");
        assert!(shown.contains("cid"));
    }

    #[test]
    fn org_ids_are_deterministic_and_slugs_url_friendly() {
        assert_eq!(
            OrgSeed::new("Demo Org", 1).id,
            OrgSeed::new("Demo Org", 9).id
        );
        assert_ne!(
            OrgSeed::new("Demo Org", 1).id,
            OrgSeed::new("Demo org", 1).id
        );
        assert_eq!(slugify("  ACME, Inc. (EU) "), "acme-inc-eu");
        assert_eq!(slugify("!!!"), "org");
    }
}
