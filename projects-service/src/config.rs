//! Typed settings for projects-service, read from the environment and validated at start-up.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use secrecy::SecretString;
use url::Url;

/// Everything projects-service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub snyk_api_url: Url,
    /// The REST API version every request pins (`version=` query parameter).
    pub snyk_rest_version: String,
    pub token_service_url: Url,
    pub token_service_api_key: SecretString,
    /// `caller=key` pairs allowed to call this service.
    pub client_keys: Vec<(String, SecretString)>,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |k: &str, default: &str| get(k).unwrap_or_else(|| default.to_owned());
        let required = |k: &str| match get(k) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => bail!("{k} must be set"),
        };
        let url = |k: &str, default: &str| {
            Url::parse(&var(k, default)).with_context(|| format!("{k} is not a valid URL"))
        };
        let version = var("SNYK_REST_VERSION", "2024-05-31");
        if !is_rest_version(&version) {
            bail!("SNYK_REST_VERSION must be YYYY-MM-DD with an optional ~beta or ~experimental");
        }
        let mut client_keys = Vec::new();
        for pair in required("PROJECTS_SERVICE_CLIENT_KEYS")?.split(',') {
            let Some((caller, key)) = pair.trim().split_once('=') else {
                bail!("PROJECTS_SERVICE_CLIENT_KEYS must be `caller=key,…`");
            };
            if caller.is_empty() || key.len() < 16 {
                bail!("PROJECTS_SERVICE_CLIENT_KEYS: caller {caller:?} needs a name and a key of at least 16 characters");
            }
            client_keys.push((caller.to_owned(), SecretString::from(key.to_owned())));
        }
        Ok(Settings {
            addr: var("PROJECTS_SERVICE_ADDR", "0.0.0.0:8081")
                .parse()
                .context("PROJECTS_SERVICE_ADDR must be host:port")?,
            snyk_api_url: url("SNYK_API_URL", "https://api.snyk.io")?,
            snyk_rest_version: version,
            token_service_url: url("TOKEN_SERVICE_URL", "http://127.0.0.1:50051")?,
            token_service_api_key: required("TOKEN_SERVICE_API_KEY")?.into(),
            client_keys,
        })
    }
}

fn is_rest_version(v: &str) -> bool {
    let date = v.split_once('~').map_or(v, |(d, stability)| {
        if matches!(stability, "beta" | "experimental") { d } else { "" }
    });
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("TOKEN_SERVICE_API_KEY", "tk"),
        ("PROJECTS_SERVICE_CLIENT_KEYS", "auth-service=0123456789abcdef0123"),
    ];

    #[test]
    fn defaults_apply() {
        let s = Settings::from_lookup(env(MINIMAL)).expect("valid");
        assert_eq!(s.addr.port(), 8081);
        assert_eq!(s.snyk_rest_version, "2024-05-31");
        assert_eq!(s.client_keys[0].0, "auth-service");
    }

    #[test]
    fn rest_version_is_validated() {
        assert!(is_rest_version("2024-05-31~beta"));
        assert!(!is_rest_version("2024-5-31"));
        assert!(!is_rest_version("2024-05-31~gamma"));
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("SNYK_REST_VERSION", "latest"));
        let err = Settings::from_lookup(env(&pairs)).expect_err("invalid");
        assert!(err.to_string().contains("SNYK_REST_VERSION"), "{err}");
    }

    #[test]
    fn short_client_key_is_refused() {
        let err = Settings::from_lookup(env(&[
            ("TOKEN_SERVICE_API_KEY", "tk"),
            ("PROJECTS_SERVICE_CLIENT_KEYS", "auth-service=short"),
        ]))
        .expect_err("invalid");
        assert!(err.to_string().contains("PROJECTS_SERVICE_CLIENT_KEYS"), "{err}");
    }
}
