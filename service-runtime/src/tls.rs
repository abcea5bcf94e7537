//! Certificates read from PEM files, in one place: the extra roots every client of Snyk trusts
//! ([`SNYK_CA_CERT`], [`ExtraRoots`]), a server's certificate chain and key ([`ServerTls`]), and
//! (crate-private) the pinned-certificate TLS a healthcheck speaks to its own server.

use std::{fmt, sync::Arc};

use anyhow::{anyhow, bail};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

/// The setting naming a PEM file of certificates trusted for HTTPS to Snyk (OAuth2 and REST) in
/// addition to the platform's roots: a TLS-inspecting proxy's CA, or a test's throwaway CA.
pub const SNYK_CA_CERT: &str = "SNYK_CA_CERT";

/// The rustls crypto provider the workspace builds (aws-lc-rs, as tonic and reqwest use).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Every certificate in `pem` (the file `path`, named by `var` in errors): at least one.
pub fn certificates(
    var: &str,
    path: &str,
    pem: &[u8],
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{var}: {path} is not a valid PEM file ({e})"))?;
    if certs.is_empty() {
        bail!(
            "{var}: {path} holds no certificate (expected one or more PEM blocks `-----BEGIN CERTIFICATE-----`)"
        );
    }
    Ok(certs)
}

/// The private key in `pem` (PKCS#8, PKCS#1 or SEC1), the file `path` named by `var` in errors.
pub fn private_key(var: &str, path: &str, pem: &[u8]) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| anyhow!("{var}: {path} holds no usable PEM private key ({e})"))
}

/// Root certificates trusted in addition to the platform's (`SNYK_CA_CERT`). Empty: the
/// platform's roots alone. Built only by [`ExtraRoots::from_pem`] (or
/// [`crate::config::Env::extra_roots`]), so every certificate in it is a usable trust anchor.
#[derive(Clone, Default)]
pub struct ExtraRoots(Arc<[reqwest::Certificate]>);

impl ExtraRoots {
    /// The certificates of `pem` (the file `path`, named by `var` in errors): at least one, each
    /// a certificate rustls accepts as a trust anchor.
    pub fn from_pem(var: &str, path: &str, pem: &[u8]) -> anyhow::Result<Self> {
        let ders = certificates(var, path, pem)?;
        let mut check = rustls::RootCertStore::empty();
        let mut certs = Vec::with_capacity(ders.len());
        for (i, der) in ders.into_iter().enumerate() {
            certs.push(
                reqwest::Certificate::from_der(der.as_ref())
                    .map_err(|e| anyhow!("{var}: certificate {} of {path}: {e}", i + 1))?,
            );
            check.add(der).map_err(|e| {
                anyhow!(
                    "{var}: certificate {} of {path} is not usable as a root: {e}",
                    i + 1
                )
            })?;
        }
        Ok(ExtraRoots(certs.into()))
    }

    /// What a `reqwest::ClientBuilder` merges with its default roots (`tls_certs_merge`).
    pub fn certificates(&self) -> &[reqwest::Certificate] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExtraRoots({} certificates)", self.0.len())
    }
}

/// An HTTPS server's identity for rustls: the certificate chain (leaf first) and private key of
/// the PEM files named by two settings (such as `PROJECTS_SERVICE_TLS_CERT` and
/// `PROJECTS_SERVICE_TLS_KEY`). Built only by [`ServerTls::from_env`], so the key matches the
/// certificate.
#[derive(Clone)]
pub struct ServerTls(Arc<rustls::ServerConfig>);

impl ServerTls {
    /// Both files named (serve TLS only), or neither (`None`: plain). One without the other, an
    /// unreadable file, or a key that cannot serve the certificate is an error naming the
    /// variable and the file.
    pub fn from_env(
        env: &crate::config::Env,
        cert_var: &str,
        key_var: &str,
    ) -> anyhow::Result<Option<Self>> {
        let ((cert_path, cert_pem), (key_path, key_pem)) =
            match (env.named_file(cert_var)?, env.named_file(key_var)?) {
                (None, None) => return Ok(None),
                (Some(cert), Some(key)) => (cert, key),
                _ => bail!("{cert_var} and {key_var} must be set together (both or neither)"),
            };
        let chain = certificates(cert_var, &cert_path, &cert_pem)?;
        let key = private_key(key_var, &key_path, &key_pem)?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                anyhow!("{key_var}: {key_path} cannot serve the certificate of {cert_path} ({e})")
            })?;
        Ok(Some(ServerTls(Arc::new(config))))
    }

    /// A copy of the server configuration (servers such as actix-web take one by value).
    pub fn server_config(&self) -> rustls::ServerConfig {
        (*self.0).clone()
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of `Debug`.
        f.write_str("ServerTls")
    }
}

/// A TLS client config that trusts exactly `cert`, whatever name or address it is reached at:
/// for a healthcheck asking its own server, which presents the certificate the healthcheck read
/// from the same file. The handshake still proves the server holds that certificate's key.
///
/// Only for a server checking itself (hence crate-private): it checks neither the name, nor the
/// issuer, nor validity dates, so an **expired** certificate still passes; expiry is for the
/// server's real clients to notice, and a liveness probe must not restart a server for it.
pub(crate) fn pinned_client(cert: CertificateDer<'static>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, algorithms }))
        .with_no_client_auth())
}

/// Accepts the one pinned end-entity certificate, byte for byte, at any time (`_now` unused:
/// expiry is not checked); handshake signatures are checked as usual.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Two self-signed P-256 CA certificates (openssl, valid for a century; no key is kept).
    const TWO_CAS: &[u8] = include_bytes!("../testdata/two-cas.pem");

    #[test]
    fn every_certificate_of_a_bundle_is_read() {
        let roots = ExtraRoots::from_pem("X_CA", "two-cas.pem", TWO_CAS).unwrap();
        assert_eq!(roots.len(), 2);
        assert_eq!(format!("{roots:?}"), "ExtraRoots(2 certificates)");
        assert!(ExtraRoots::default().is_empty());
    }

    #[test]
    fn a_file_without_a_usable_certificate_is_an_error_naming_the_variable_and_the_file() {
        let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let not_x509 = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        for (pem, expected) in [
            (&b""[..], "holds no certificate"),
            (b"just text\n", "holds no certificate"),
            (key, "holds no certificate"),
            (broken, "not a valid PEM file"),
            (not_x509, "not usable as a root"),
        ] {
            let err = ExtraRoots::from_pem("X_CA", "/etc/x.pem", pem)
                .unwrap_err()
                .to_string();
            assert!(err.contains("X_CA") && err.contains("/etc/x.pem"), "{err}");
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}
