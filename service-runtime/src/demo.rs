//! Demo mode fails closed: the values docker-compose.yml falls back to are published, so a service
//! refuses them unless `DEMO_MODE=true`, and refuses `DEMO_MODE=true` unless every Snyk URL it
//! reads points at a fake Snyk: this machine, or a host named in `DEMO_SNYK_HOSTS`.
//! [`crate::config::Env`] applies these rules; this module holds the lists and the tests.
//!
//! The demo's Snyk is allowed by name rather than Snyk refused by name: a deny-list of Snyk's
//! domains would let through whatever it does not know (Snyk for Government on `snykgov.io`, a
//! company proxy in front of Snyk, a region added next year), and each would then run with the
//! published demo keys.

use url::{Host, Url};

/// The variable that turns demo mode on.
pub const DEMO_MODE: &str = "DEMO_MODE";

/// Every value docker-compose.yml falls back to when a secret is unset (`${X:-…}`), or the part of
/// it that makes it a key (base64 without its `=` padding, without the key id). A setting that
/// contains one of them is refused outside demo mode. `tests/system/deploy.rs` checks that this
/// list and the compose file's defaults name each other, so they cannot drift apart.
pub const SHIPPED_VALUES: &[&str] = &[
    // SNYK_CLIENT_ID, FAKE_SNYK_CLIENT_ID
    "demo-client-id",
    // SNYK_CLIENT_SECRET, FAKE_SNYK_CLIENT_SECRET
    "demo-client-secret",
    // TOKEN_ENCRYPTION_KEYS (`demo:` + base64 of "demo-only-token-key-NOT-A-SECRET")
    "ZGVtby1vbmx5LXRva2VuLWtleS1OT1QtQS1TRUNSRVQ",
    // PROJECTS_SERVICE_TOKEN_KEY
    "demo-projects-to-token-key-not-secret",
    // AUTH_SERVICE_TOKEN_KEY
    "demo-auth-to-token-key-not-secret",
    // OPS_TOKEN_KEY (the operator tools' caller `ops` of token-service)
    "demo-ops-to-token-key-not-secret",
    // AUTH_SERVICE_PROJECTS_KEY
    "demo-auth-to-projects-key-not-secret",
    // TOKEN_SERVICE_REDIS_PASSWORD (token-service's user in the grants' Redis)
    "demo-token-service-redis-password-not-secret",
    // AUTH_SERVICE_REDIS_PASSWORD (auth-service's user in its own Redis)
    "demo-auth-service-redis-password-not-secret",
    // GRAFANA_ADMIN_PASSWORD (Grafana of the `observability` profile; compose.real.yml drops it)
    "demo-grafana-admin-not-secret",
    // AUTH_COOKIE_KEY (base64 of "demo-only-cookie-key-it-is-in-docker-compose.yml-so-NOT-A-SECRET")
    "ZGVtby1vbmx5LWNvb2tpZS1rZXktaXQtaXMtaW4tZG9ja2VyLWNvbXBvc2UueW1sLXNvLU5PVC1BLVNFQ1JFVA",
];

/// `DEMO_MODE` as written: unset or blank is off; anything but a clear yes or no is an error, so
/// a typo cannot silently pick a mode.
pub fn parse(value: Option<&str>) -> anyhow::Result<bool> {
    match value
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
        .unwrap_or("")
    {
        "" | "false" | "0" | "no" => Ok(false),
        "true" | "1" | "yes" => Ok(true),
        _ => anyhow::bail!("{DEMO_MODE} must be true or false"),
    }
}

/// Whether `value` contains a value published in docker-compose.yml.
pub fn is_shipped(value: &str) -> bool {
    SHIPPED_VALUES.iter().any(|shipped| value.contains(shipped))
}

/// The variable naming the hosts, besides this machine, where demo mode may find its fake Snyk.
pub const DEMO_SNYK_HOSTS: &str = "DEMO_SNYK_HOSTS";

/// [`DEMO_SNYK_HOSTS`] when unset: the fake's service name in docker-compose.yml.
pub const DEFAULT_DEMO_SNYK_HOSTS: &str = "fake-snyk";

/// Domains that are Snyk's own, whatever `DEMO_SNYK_HOSTS` says: naming one of them there is
/// refused, so the allow-list cannot be turned against its purpose by a slip.
const SNYK_DOMAINS: &[&str] = &["snyk.io", "snykgov.io"];

/// The hosts a demo-mode Snyk URL may point at besides loopback: [`DEMO_SNYK_HOSTS`], host names
/// compared without case and without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSnykHosts(Vec<String>);

impl DemoSnykHosts {
    /// A comma-separated list of host names. Blank entries are skipped; an entry that is not a
    /// host name (a URL, a port, an address) or that is Snyk's is an error naming the variable.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let mut hosts = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let host = match Host::parse(entry) {
                Ok(Host::Domain(d)) if !d.contains([':', '/', '@']) => normalize(&d),
                _ => anyhow::bail!(
                    "{DEMO_SNYK_HOSTS} must be comma-separated host names, like {DEFAULT_DEMO_SNYK_HOSTS}; {entry:?} is not one"
                ),
            };
            if is_snyk_domain(&host) {
                anyhow::bail!(
                    "{DEMO_SNYK_HOSTS} must not name Snyk ({entry:?}): demo mode runs against a fake Snyk only"
                );
            }
            hosts.push(host);
        }
        Ok(DemoSnykHosts(hosts))
    }

    /// Whether demo mode may send its published keys to `url`: loopback, or one of these hosts.
    pub fn admits(&self, url: &Url) -> bool {
        is_loopback(url)
            || match url.host() {
                Some(Host::Domain(d)) => self.0.contains(&normalize(d)),
                _ => false,
            }
    }
}

impl std::fmt::Display for DemoSnykHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

fn normalize(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// `snyk.io`, `snykgov.io` or a subdomain of either.
fn is_snyk_domain(host: &str) -> bool {
    SNYK_DOMAINS
        .iter()
        .any(|d| host == *d || host.strip_suffix(d).is_some_and(|h| h.ends_with('.')))
}

/// This machine: `localhost`, 127.0.0.0/8 or `::1`. Plain http is acceptable there only.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => is_loopback_host(d),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A host name or address (without brackets) that is this machine: `localhost`, `127.0.0.0/8`,
/// `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn demo_mode_admits_loopback_and_the_named_hosts_only() {
        let hosts = DemoSnykHosts::parse(DEFAULT_DEMO_SNYK_HOSTS).unwrap();
        for u in [
            "http://fake-snyk:8090",
            "https://FAKE-SNYK.:8443/",
            "http://127.0.0.1:8090",
            "http://[::1]:1",
            "http://localhost:8090",
        ] {
            assert!(hosts.admits(&url(u)), "{u}");
        }
        for u in [
            "https://api.snyk.io",
            "https://api.snykgov.io",
            "https://app.snykgov.io",
            "https://snyk-proxy.corp.example",
            "https://fake-snyk.example",
            "http://fake-snyk.evil:8090",
            "http://10.0.0.1:8090",
        ] {
            assert!(!hosts.admits(&url(u)), "{u}");
        }
        let named = DemoSnykHosts::parse(" snyk-standin , ,Fake.Example. ").unwrap();
        assert_eq!(named.to_string(), "snyk-standin,fake.example");
        assert!(named.admits(&url("https://snyk-standin:8443")));
        assert!(named.admits(&url("https://fake.example")));
        assert!(
            !named.admits(&url("http://fake-snyk:8090")),
            "replaced, not added to"
        );
        let none = DemoSnykHosts::parse("").unwrap();
        assert!(none.admits(&url("http://127.0.0.1:1")));
        assert!(!none.admits(&url("http://fake-snyk:8090")));
    }

    #[test]
    fn demo_snyk_hosts_are_host_names_and_never_snyk() {
        for bad in [
            "http://fake-snyk",
            "fake-snyk:8090",
            "10.0.0.1",
            "a b",
            "snyk.io",
            "api.snyk.io",
            "API.SNYKGOV.IO.",
            "fake-snyk,app.eu.snyk.io",
        ] {
            let err = DemoSnykHosts::parse(bad).unwrap_err().to_string();
            assert!(err.contains(DEMO_SNYK_HOSTS), "{bad}: {err}");
        }
        for ok in ["notsnyk.io", "snyk.io.example", "snyk-standin"] {
            DemoSnykHosts::parse(ok).unwrap();
        }
    }

    #[test]
    fn loopback_is_localhost_127_and_ipv6_one() {
        for u in [
            "http://127.0.0.1:1",
            "http://127.1.2.3",
            "http://[::1]:8090",
            "http://localhost:8090",
            "http://LocalHost.",
        ] {
            assert!(is_loopback(&url(u)), "{u}");
        }
        for u in [
            "http://fake-snyk:8090",
            "http://10.0.0.1",
            "http://localhost.example",
            "http://[::2]",
        ] {
            assert!(!is_loopback(&url(u)), "{u}");
        }
    }

    #[test]
    fn demo_mode_is_a_clear_yes_or_no() {
        assert!(!parse(None).unwrap());
        assert!(!parse(Some(" ")).unwrap());
        assert!(!parse(Some("false")).unwrap());
        assert!(parse(Some("TRUE")).unwrap());
        assert!(parse(Some("1")).unwrap());
        let err = parse(Some("ture")).unwrap_err();
        assert!(err.to_string().contains(DEMO_MODE), "{err}");
    }

    #[test]
    fn shipped_values_are_found_inside_compound_settings() {
        assert!(is_shipped(
            "projects-service=demo-projects-to-token-key-not-secret"
        ));
        assert!(is_shipped(
            "k1:ZGVtby1vbmx5LXRva2VuLWtleS1OT1QtQS1TRUNSRVQ="
        ));
        assert!(!is_shipped(
            "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        ));
    }
}

/// What every service's config tests check about its shipped demo values.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::fmt::Display;

    /// Each `(variable, shipped value)` alone is refused without `DEMO_MODE` (the error names
    /// the variable and `DEMO_MODE`), and accepted in demo mode against the fake (`fake_url`,
    /// the service's Snyk URL variable and a fake's URL). `load` reads the service's settings
    /// with these overrides on top of a valid minimal environment.
    ///
    /// # Panics
    /// When a rule does not hold (this is a test assertion).
    pub fn assert_shipped_values_need_demo_mode<T, E: Display>(
        shipped: &[(&'static str, &'static str)],
        fake_url: (&'static str, &'static str),
        load: impl Fn(&[(&'static str, &'static str)]) -> Result<T, E>,
    ) {
        for &(k, v) in shipped {
            match load(&[(k, v)]) {
                Ok(_) => panic!("{k}: a shipped demo value was accepted outside demo mode"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(k) && e.contains(super::DEMO_MODE), "{k}: {e}");
                }
            }
            if let Err(e) = load(&[(k, v), (super::DEMO_MODE, "true"), fake_url]) {
                panic!("{k}: the demo stack was refused: {e}");
            }
        }
    }
}
