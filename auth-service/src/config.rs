//! Typed settings for auth-service, read from the environment and validated at start-up.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use secrecy::SecretString;
use url::Url;

/// Everything auth-service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub snyk_app_url: Url,
    pub client_id: String,
    pub redirect_uri: Url,
    pub scopes: Option<String>,
    pub token_service_url: Url,
    pub token_service_api_key: SecretString,
    pub projects_service_url: Url,
    pub projects_service_api_key: SecretString,
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
        let redirect_uri = url("SNYK_REDIRECT_URI", "http://localhost:8080/callback")?;
        if redirect_uri.fragment().is_some() {
            bail!("SNYK_REDIRECT_URI must not have a fragment");
        }
        Ok(Settings {
            addr: var("AUTH_SERVICE_ADDR", "0.0.0.0:8080")
                .parse()
                .context("AUTH_SERVICE_ADDR must be host:port")?,
            snyk_app_url: url("SNYK_APP_URL", "https://app.snyk.io")?,
            client_id: required("SNYK_CLIENT_ID")?,
            redirect_uri,
            scopes: get("SNYK_SCOPES").filter(|s| !s.trim().is_empty()),
            token_service_url: url("TOKEN_SERVICE_URL", "http://127.0.0.1:50051")?,
            token_service_api_key: required("TOKEN_SERVICE_API_KEY")?.into(),
            projects_service_url: url("PROJECTS_SERVICE_URL", "http://127.0.0.1:8081")?,
            projects_service_api_key: required("PROJECTS_SERVICE_API_KEY")?.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("SNYK_CLIENT_ID", "cid"),
        ("TOKEN_SERVICE_API_KEY", "tk"),
        ("PROJECTS_SERVICE_API_KEY", "pk"),
    ];

    #[test]
    fn defaults_apply() {
        let s = Settings::from_lookup(env(MINIMAL)).expect("valid");
        assert_eq!(s.addr.port(), 8080);
        assert_eq!(s.redirect_uri.as_str(), "http://localhost:8080/callback");
        assert_eq!(s.snyk_app_url.as_str(), "https://app.snyk.io/");
    }

    #[test]
    fn missing_client_id_names_the_variable() {
        let err = Settings::from_lookup(env(&MINIMAL[1..])).expect_err("invalid");
        assert!(err.to_string().contains("SNYK_CLIENT_ID"), "{err}");
    }

    #[test]
    fn bad_url_names_the_variable() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("SNYK_APP_URL", "not a url"));
        let err = Settings::from_lookup(env(&pairs)).expect_err("invalid");
        assert!(format!("{err:#}").contains("SNYK_APP_URL"), "{err:#}");
    }

    #[test]
    fn api_keys_do_not_leak_through_debug() {
        let s = Settings::from_lookup(env(MINIMAL)).expect("valid");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("\"tk\"") && !dbg.contains("\"pk\""), "{dbg}");
    }
}
