//! HTTPS for the fake: its certificate chain and key (`FAKE_SNYK_TLS_CERT`, `FAKE_SNYK_TLS_KEY`),
//! served by rustls (the TLS stack the workspace already builds, no OpenSSL) under the same
//! hand-written hyper accept loop as plain HTTP.

use std::{fmt, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

/// The certificate variable; its first certificate is also what `fake-snyk healthcheck` pins.
pub const CERT_VAR: &str = "FAKE_SNYK_TLS_CERT";
/// The private key variable.
pub const KEY_VAR: &str = "FAKE_SNYK_TLS_KEY";

/// The fake's server identity: with one in [`crate::Config::tls`], the fake serves HTTPS only.
#[derive(Clone)]
pub struct TlsIdentity {
    pub(crate) server: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of `Debug`.
        f.write_str("TlsIdentity")
    }
}

impl TlsIdentity {
    /// A certificate chain (leaf first) and its private key. Fails when the key does not match
    /// the leaf or rustls cannot use them.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, rustls::Error> {
        let mut server =
            rustls::ServerConfig::builder_with_provider(service_runtime::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain, key)?;
        // The fake speaks HTTP/1.1 only.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity {
            server: Arc::new(server),
        })
    }

    /// `FAKE_SNYK_TLS_CERT` and `FAKE_SNYK_TLS_KEY`: the paths of both PEM files (HTTPS), or of
    /// neither (plain HTTP). Every error names the variable and the file.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let path = |var| {
            lookup(var)
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
        };
        let (cert_path, key_path) = match (path(CERT_VAR), path(KEY_VAR)) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (cert, _) => {
                let (var, other) = if cert.is_some() {
                    (KEY_VAR, CERT_VAR)
                } else {
                    (CERT_VAR, KEY_VAR)
                };
                return Err(ConfigError::Unusable {
                    var,
                    reason: format!("{var} must be set together with {other} (both or neither)"),
                });
            }
        };
        let read = |var: &'static str, path: &str| {
            std::fs::read(path).map_err(|e| ConfigError::Unusable {
                var,
                reason: format!("{var}: cannot read {path}: {e}"),
            })
        };
        let unusable = |var: &'static str| {
            move |e: anyhow::Error| ConfigError::Unusable {
                var,
                reason: e.to_string(),
            }
        };
        let chain =
            service_runtime::tls::certificates(CERT_VAR, &cert_path, &read(CERT_VAR, &cert_path)?)
                .map_err(unusable(CERT_VAR))?;
        let key = service_runtime::tls::private_key(KEY_VAR, &key_path, &read(KEY_VAR, &key_path)?)
            .map_err(unusable(KEY_VAR))?;
        TlsIdentity::new(chain, key)
            .map(Some)
            .map_err(|e| ConfigError::Unusable {
                var: KEY_VAR,
                reason: format!(
                    "{KEY_VAR}: {key_path} cannot serve the certificate of {cert_path} ({e})"
                ),
            })
    }
}
